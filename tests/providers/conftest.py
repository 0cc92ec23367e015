"""Fixtures shared by the provider tests."""

from __future__ import annotations

import threading

import pytest

from fault_server import FaultServer


@pytest.fixture
def server():
    """A fault server of the test's own, stopped at the end; no thread of it may outlive the test."""
    threads = set(threading.enumerate())
    with FaultServer() as srv:
        yield srv
    # fmflow's trace writer is one thread for the whole process, started by the first traced run
    left = [t for t in threading.enumerate() if t not in threads and t.is_alive()
            and t.name != "fmflow-trace-writer"]
    assert not left, f"threads left behind: {left}"
