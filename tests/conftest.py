"""Fixtures shared by the tests: scripted models, replay models that start over in every test, stdlib modules."""

from __future__ import annotations

import pytest

from fmflow.providers import get_provider, register_provider
from fmflow.providers.replay import ScriptedProvider
from fmflow.resources import stdlib_module


@pytest.fixture(autouse=True)
def _fresh_replay():
    """Replay models answer from the start of their list in every test."""
    get_provider("replay").reset()
    yield
    get_provider("replay").reset()


@pytest.fixture
def scripted():
    """Make a ScriptedProvider and register it as provider "scripted"."""
    def make(script, **kwargs) -> ScriptedProvider:
        provider = ScriptedProvider(script, **kwargs)
        register_provider("scripted", lambda: provider)
        return provider
    return make


@pytest.fixture(scope="session")
def std():
    """``std("filters")`` is the stdlib's module std_filters, as flows load it (once per process)."""
    return lambda name: stdlib_module(f"std_{name}")
