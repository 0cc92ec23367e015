"""Fixtures shared by the retrieval tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_models import build_tiny_bert


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BERT folder (hidden size 32): fast to load and to run, for `hf:FOLDER` embeddings."""
    pytest.importorskip("transformers", reason="the tiny BERT needs transformers and tokenizers")
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")
