"""Fixtures shared by the tests: scripted models, replay models that start over in every test."""

from __future__ import annotations

import pytest

from fmflow.providers import get_provider, register_provider
from fmflow.providers.replay import ScriptedProvider


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
