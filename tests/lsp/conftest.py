"""The language server under test: one `fmflow lsp` subprocess per test, always stopped."""

from __future__ import annotations

import pytest

from lspclient import LspClient


@pytest.fixture
def lsp(tmp_path):
    client = LspClient(tmp_path)
    try:
        client.initialize(tmp_path)
        yield client
    finally:
        client.close()
