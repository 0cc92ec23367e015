"""The Chroma store (fmflow/retrieval/store.py): collections, search, MMR.

A small bag-of-words embedding function stands in for the model here: these
tests are about the store, not about embedding quality (tests/retrieval/
test_index.py uses the real builtin:minilm model where quality matters).
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fmflow.retrieval.store import (
    EMBEDDING_KEY, Hit, StoreError, chroma_where, collection, mmr, mmr_select, open_store, search,
)

ROOT = Path(__file__).resolve().parents[2]


def _fake_class():
    """A deterministic bag-of-words embedding function, registered with Chroma once."""
    from chromadb.api.types import EmbeddingFunction
    from chromadb.utils.embedding_functions import known_embedding_functions, register_embedding_function

    if "fmflow-test-bow-store" in known_embedding_functions:
        return known_embedding_functions["fmflow-test-bow-store"]

    class BagOfWords(EmbeddingFunction):
        def __init__(self, dims: int = 64) -> None:
            self.dims = dims

        def __call__(self, input):
            return [_bag(text, self.dims) for text in input]

        @staticmethod
        def name() -> str:
            return "fmflow-test-bow-store"

        def get_config(self):
            return {"dims": self.dims}

        @staticmethod
        def build_from_config(config):
            return BagOfWords(config["dims"])

    register_embedding_function(BagOfWords)
    return BagOfWords


def _bag(text: str, dims: int) -> list[float]:
    vector = [0.0] * dims
    for word in text.lower().replace(".", " ").split():
        vector[int(hashlib.sha1(word.encode()).hexdigest(), 16) % dims] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


@pytest.fixture
def fake():
    return _fake_class()()


@pytest.fixture
def docs(tmp_path, fake):
    client = open_store(str(tmp_path / "store"))
    made = collection(client, "docs", "fake:bow", create=True, embedding_function=fake)
    made.upsert(
        ids=["a", "b", "c", "d", "e"],
        documents=["cats purr when content", "cats purr loudly when content", "dogs bark at night",
                   "the stock market fell", "cats sleep all day"],
        metadatas=[{"source": "pets.md", "lang": "en"}, {"source": "pets.md", "lang": "en"},
                   {"source": "dogs.md", "lang": "en"}, {"source": "news.md", "lang": "en"},
                   {"source": "chats.md", "lang": "fr"}])
    return made


# ------------------------------------------------------------------ MMR (pure)

def test_mmr_select_prefers_a_diverse_second_pick():
    query = [1.0, 0.3]
    candidates = [[1.0, 0.0], [1.0, 0.01], [0.6, 0.8]]
    assert mmr_select(query, candidates, 2) == [1, 2]  # not the near-duplicate 0
    assert mmr_select(query, candidates, 2, lambda_=1.0) == [1, 0]  # plain relevance
    assert mmr_select(query, candidates, 10) == [1, 2, 0]


def test_mmr_select_edge_cases():
    assert mmr_select([1.0, 0.0], [], 3) == []
    assert mmr_select([1.0, 0.0], [[1.0, 0.0]], 0) == []
    assert mmr_select([0.0, 0.0], [[0.0, 0.0], [1.0, 0.0]], 2) == [0, 1]  # zero vectors do not crash
    assert mmr_select([1.0, 0.0], [[2.0, 0.0], [0.0, 5.0]], 1) == [0]  # lengths do not matter


def test_chroma_where():
    assert chroma_where(None) is None
    assert chroma_where({}) is None
    assert chroma_where({"lang": "en"}) == {"lang": "en"}
    assert chroma_where({"lang": "en", "source": "a.md"}) == {"$and": [{"lang": "en"}, {"source": "a.md"}]}
    already = {"$or": [{"lang": "en"}, {"lang": "fr"}]}
    assert chroma_where(already) == already


# ------------------------------------------------------------------ the store

def test_open_store_reuses_one_client_per_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = open_store("store")
    assert open_store(str(tmp_path / "store")) is first
    assert open_store("./store/") is first
    assert open_store("other") is not first
    assert (tmp_path / "store").is_dir()


def test_open_store_on_a_file_is_a_store_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        open_store(str(tmp_path / "file"))


def test_new_collection_uses_cosine_and_records_its_embedding(docs):
    assert docs.configuration_json["hnsw"]["space"] == "cosine"
    assert docs.metadata[EMBEDDING_KEY] == "fake:bow"


def test_unknown_collection_says_how_to_make_it(tmp_path, docs, fake):
    client = open_store(str(tmp_path / "store"))
    with pytest.raises(StoreError) as error:
        collection(client, "manuals", "fake:bow", embedding_function=fake)
    message = str(error.value)
    assert "collection 'manuals' not found in" in message
    assert "store" in message
    assert "(collections: docs)" in message
    assert "index documents first: fmflow index PATH --collection manuals" in message


def test_unknown_collection_in_an_empty_store(tmp_path, fake):
    with pytest.raises(StoreError, match=r"\(collections: none\)"):
        collection(open_store(str(tmp_path / "empty")), "docs", "fake:bow", embedding_function=fake)


def test_other_embedding_than_the_collection_was_made_with(tmp_path, docs, fake):
    client = open_store(str(tmp_path / "store"))
    with pytest.raises(StoreError) as error:
        collection(client, "docs", "builtin:minilm", embedding_function=fake)
    assert "indexed with embedding 'fake:bow', not 'builtin:minilm'" in str(error.value)
    # Creating (as `fmflow index` does) is checked the same way.
    with pytest.raises(StoreError, match="indexed with embedding 'fake:bow'"):
        collection(client, "docs", "other:spec", create=True, embedding_function=fake)


def test_embedding_none_takes_the_collections_own(tmp_path, docs, fake):
    again = collection(open_store(str(tmp_path / "store")), "docs", None, embedding_function=fake)
    assert again.count() == 5


def test_create_twice_opens_the_same_collection(tmp_path, docs, fake):
    again = collection(open_store(str(tmp_path / "store")), "docs", "fake:bow", create=True, embedding_function=fake)
    assert again.id == docs.id and again.count() == 5


@pytest.mark.parametrize("name", ["ab", "-docs", "docs-", "my docs", "a..b", "dé"])
def test_invalid_collection_names(tmp_path, fake, name):
    with pytest.raises(StoreError, match="invalid collection name"):
        collection(open_store(str(tmp_path / "store")), name, "fake:bow", create=True, embedding_function=fake)


# ------------------------------------------------------------------ search

def test_search_best_first_with_cosine_scores(docs):
    hits = search(docs, "cats purr when content", 3)
    assert [h.id for h in hits][:2] == ["a", "b"]
    assert isinstance(hits[0], Hit)
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)  # the same words: same direction
    assert hits[0].text == "cats purr when content"
    assert hits[0].metadata == {"source": "pets.md", "lang": "en"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(-1.0 <= h.score <= 1.0 + 1e-6 for h in hits)


def test_search_where_filter(docs):
    assert [h.id for h in search(docs, "cats", 5, {"lang": "fr"})] == ["e"]
    assert {h.id for h in search(docs, "cats", 5, {"source": "pets.md"})} == {"a", "b"}
    both = search(docs, "cats", 5, {"source": "pets.md", "lang": "fr"})  # every key must match
    assert both == []


def test_search_min_score(docs):
    everything = search(docs, "cats purr", 5)
    assert len(everything) == 5
    strong = search(docs, "cats purr", 5, min_score=0.5)
    assert {h.id for h in strong} == {"a", "b"}
    assert all(h.score >= 0.5 for h in strong)
    assert search(docs, "cats purr", 5, min_score=1.01) == []


def test_search_edge_cases(tmp_path, docs, fake):
    assert search(docs, "   ", 3) == []
    assert search(docs, "cats", 0) == []
    assert len(search(docs, "cats", 50)) == 5  # k over the collection's size
    empty = collection(open_store(str(tmp_path / "store")), "empty-one", "fake:bow", create=True,
                       embedding_function=fake)
    assert search(empty, "cats", 3) == []


def test_mmr_search_skips_near_duplicates(docs):
    plain = [h.id for h in search(docs, "cats purr content", 2)]
    diverse = [h.id for h in mmr(docs, "cats purr content", 2)]
    assert plain == ["a", "b"]
    assert diverse[0] == "a" and diverse[1] != "b"
    assert [h.id for h in mmr(docs, "cats", 3, {"source": "pets.md"})] in (["a", "b"], ["b", "a"])


# ------------------------------------------------------------------ imports

def test_chromadb_and_pypdf_are_not_imported_by_fmflow_or_check(tmp_path):
    (tmp_path / "kb.fmflow").write_text('retriever kb { collection: "docs" }\n', encoding="utf-8")
    code = (
        "import sys, fmflow, fmflow.cli, fmflow.retrieval.store, fmflow.retrieval.indexing\n"
        "import fmflow.retrieval.documents, fmflow.retrieval.chunking\n"
        "status = fmflow.cli.main(['check', 'kb.fmflow'])\n"
        "heavy = [m for m in ('chromadb', 'pypdf', 'torch', 'rich') if m in sys.modules]\n"
        "print(status, heavy)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.split("\n")[-2].endswith("[]"), result.stdout + result.stderr
