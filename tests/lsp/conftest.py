"""The language server under test: one `fmflow lsp` subprocess per test module, always stopped.

Starting the server costs seconds on a busy machine, so a module's tests share
one; each test works in its own folder under the server's workspace root and
starts with no notifications left over from the one before.
"""

from __future__ import annotations

import itertools

import pytest

from lspclient import LspClient

_numbers = itertools.count()


@pytest.fixture(scope="module")
def lsp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="module")
def _server(lsp_root):
    client = LspClient(lsp_root)
    try:
        client.capabilities = client.initialize(lsp_root)["capabilities"]
        yield client
    finally:
        client.close()


@pytest.fixture
def lsp(_server):
    _server.drain()
    assert _server.process.poll() is None, _server.stderr()
    return _server


@pytest.fixture
def tmp_path(lsp_root):
    """A fresh folder inside the workspace the server was started on."""
    folder = lsp_root / f"t{next(_numbers)}"
    folder.mkdir()
    return folder
