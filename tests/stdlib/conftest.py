"""The stdlib's Python modules, as flows load them (one instance per process)."""

from __future__ import annotations

import pytest

from fmflow.resources import stdlib_module


@pytest.fixture(scope="session")
def std():
    """``std("filters")`` is the module std_filters."""
    return lambda name: stdlib_module(f"std_{name}")
