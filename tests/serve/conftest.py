"""Fixtures of the serve tests: an app built from flow files, served by uvicorn on loopback."""

from __future__ import annotations

import httpx
import pytest

from fmflow.api import load_program
from fmflow.runtime import Program, RunOptions
from fmflow.serve import FlowCatalog, ServeSettings, build_app

from servers import ThreadServer, write_flows


def load_catalog(*paths) -> FlowCatalog:
    programs = []
    for path in paths:
        loader, ctx = load_program(str(path))
        assert not [d for d in loader.diagnostics() if d.is_error], loader.diagnostics()
        programs.append(Program(loader, ctx))
    return FlowCatalog.from_programs(programs)


@pytest.fixture
def serve_app(tmp_path):
    """``serve_app(token=…, max_body=…, cache=…, text=…)`` → a running ThreadServer; stopped at teardown."""
    started: list[ThreadServer] = []

    def start(text: str | None = None, *, token: str | None = None, max_body: int = 1024 * 1024,
              cache: bool = True) -> ThreadServer:
        path = write_flows(tmp_path) if text is None else write_flows(tmp_path, text)
        options = RunOptions(cache=cache, workdir=str(tmp_path))
        server = ThreadServer(build_app(load_catalog(path), options, ServeSettings(token=token, max_body=max_body)))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def client():
    with httpx.Client(timeout=30) as http:
        yield http
