"""`pipeline` declarations run by fmflow.data.pipeline: each step on real data, sources and sinks,
errors beside the sink, near-dedupe on known paraphrases, embed into a real Chroma store, resume rules."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fmflow.data import DataError
from fmflow.data.pipeline import run_pipeline, summary

from test_batch_cli import write

TYPES = """
    import "std/filters"

    type Raw { id: str, text: str, lang: str? }
    type Example { prompt: str, completion: str }

    model echo {
      provider: "replay"
      options: { responses: [{ text: "summary" }], cycle: true }
    }
    prompt summarize(text: str) -> str {
      model: echo
      template: "Summarize: {{ text }}"
    }
    flow to_example(r: Raw) -> Example {
      return Example(prompt: r.text, completion: summarize(r.text) + " of " + r.id)
    }
    flow variants(r: Raw) -> list[Raw] {
      return [r, Raw(id: r.id + "-loud", text: upper(r.text), lang: r.lang)]
    }
"""

PARAPHRASES = [
    ("How do I reset my password?", "How can I reset my password?"),
    ("The cat sat on the mat.", "A cat was sitting on the mat."),
    ("What is the capital of France?", "What's the capital city of France?"),
    ("I would like a refund for my order.", "I want a refund for my order."),
    ("The meeting is moved to Friday afternoon.", "The meeting has been moved to Friday afternoon."),
    ("Where can I download the invoice?", "Where do I download my invoice?"),
]
# Same topics, other meanings: MiniLM cosine 0.50-0.66 with the first of each pair above.
NOT_PARAPHRASES = [
    "How do I change my username?", "What is the capital of Germany?", "I would like to track my order.",
    "The meeting is cancelled on Monday morning.", "Bananas are rich in potassium.",
    "The train to Berlin leaves at noon.",
]


def pipeline_file(tmp_path: Path, body: str) -> Path:
    return write(tmp_path / "prepare.fmflow", TYPES + body)


def raw_lines(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the store and the response cache live under the current directory


def test_keep_drop_map_expand_and_sample_on_real_records(tmp_path):
    rows = [{"id": str(i), "text": f"record number {i} " + "x" * (i % 7), "lang": "fr" if i % 5 == 0 else "en"}
            for i in range(1, 41)]
    raw_lines(tmp_path / "data/raw.jsonl", rows)
    flow = pipeline_file(tmp_path, """
        pipeline prepare {
          source: jsonl("data/raw.jsonl", type: Raw)
          steps: [
            keep(record.lang == "en"),
            drop(len(record.text) < 18),
            expand(variants(record)),
            map(to_example),
            sample(10, seed: 7),
          ]
          sink: jsonl("out/train.jsonl")
        }
    """)
    (tmp_path / "out").mkdir()
    result = run_pipeline(str(flow))
    kept = [r for r in rows if r["lang"] == "en" and len(r["text"]) >= 18]
    assert [(s.records_in, s.records_out) for s in result.steps] == [
        (40, 32), (32, len(kept)), (len(kept), 2 * len(kept)), (2 * len(kept), 2 * len(kept)),
        (2 * len(kept), 10)]
    out = read_jsonl(tmp_path / "out/train.jsonl")
    assert len(out) == result.written == 10
    universe = {(r["text"], f"summary of {r['id']}") for r in kept} | \
        {(r["text"].upper(), f"summary of {r['id']}-loud") for r in kept}
    assert {(o["prompt"], o["completion"]) for o in out} <= universe
    order = [p for r in kept for p in (r["text"], r["text"].upper())]
    assert [o["prompt"] for o in out] == sorted((o["prompt"] for o in out), key=order.index)  # source order
    again = run_pipeline(str(flow))  # the same seed picks the same records
    assert read_jsonl(tmp_path / "out/train.jsonl") == out and again.written == 10
    assert not (tmp_path / "out/train.jsonl.fmflow-work").exists()
    assert "step 5 (sample)" in summary(result) and "wrote 10" in summary(result)


def test_near_dedupe_drops_paraphrases_and_keeps_the_rest(tmp_path):
    texts = [a for a, _ in PARAPHRASES] + NOT_PARAPHRASES + [b for _, b in PARAPHRASES] + [PARAPHRASES[0][0]]
    raw_lines(tmp_path / "raw.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(texts, 1)])
    flow = pipeline_file(tmp_path, """
        pipeline unique {
          source: jsonl("raw.jsonl", type: Raw)
          steps: [dedupe(record.text, near: 0.9)]
          sink: jsonl("unique.jsonl")
        }
    """)
    result = run_pipeline(str(flow))
    kept = [r["text"] for r in read_jsonl(tmp_path / "unique.jsonl")]
    assert kept == [a for a, _ in PARAPHRASES] + NOT_PARAPHRASES  # the first of each group, in order
    assert result.steps[0].records_in == len(texts) and result.steps[0].records_out == len(kept)


def test_exact_dedupe_compares_any_value(tmp_path):
    rows = [{"id": "a", "text": "one"}, {"id": "b", "text": "One"}, {"id": "a", "text": "two"},
            {"id": "c", "text": "one"}]
    raw_lines(tmp_path / "raw.jsonl", rows)
    flow = pipeline_file(tmp_path, """
        pipeline unique {
          source: jsonl("raw.jsonl", type: Raw)
          steps: [dedupe({ text: lower(record.text) })]
          sink: jsonl("unique.jsonl")
        }
    """)
    run_pipeline(str(flow))
    assert [r["id"] for r in read_jsonl(tmp_path / "unique.jsonl")] == ["a", "a"]


def test_failed_records_go_beside_the_sink_and_the_rest_goes_on(tmp_path):
    raw_lines(tmp_path / "raw.jsonl", [
        {"id": "1", "text": "12"}, {"id": "2", "text": "twelve"}, {"id": 3, "text": "3"}, "{oops",
        {"id": "5", "text": "5"}])
    flow = pipeline_file(tmp_path, """
        type Number { id: str, value: int }
        pipeline numbers {
          source: jsonl("raw.jsonl", type: Raw)
          steps: [map(Number(id: record.id, value: int(record.text)))]
          sink: csv("numbers.csv")
        }
    """)
    result = run_pipeline(str(flow))
    with open(tmp_path / "numbers.csv", newline="") as f:
        assert list(csv.reader(f)) == [["id", "value"], ["1", "12"], ["5", "5"]]
    errors = read_jsonl(tmp_path / "numbers.csv.errors.jsonl")
    assert [(e["line"], e["step"]) for e in errors] == [(2, "step 1 (map)"), (3, "source"), (4, "source")]
    assert errors[0]["record"] == {"id": "2", "text": "twelve", "lang": None} and "int()" in errors[0]["error"]
    assert "not valid JSON" in errors[2]["error"]
    assert (result.read, result.written, result.failed) == (5, 2, 3)
    raw_lines(tmp_path / "raw.jsonl", [{"id": "1", "text": "1"}])
    run_pipeline(str(flow))  # a clean run leaves no stale errors file
    assert not (tmp_path / "numbers.csv.errors.jsonl").exists()


def test_csv_and_parquet_sources_and_a_parquet_sink(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    (tmp_path / "raw.csv").write_text("id,text,lang\n1,first text,en\n2,second text,\n", encoding="utf-8")
    flow = pipeline_file(tmp_path, """
        pipeline to_parquet {
          source: csv("raw.csv", type: Raw)
          steps: [map(to_example)]
          sink: parquet("train.parquet")
        }
        pipeline from_parquet {
          source: parquet("train.parquet", type: Example)
          steps: [keep(record.prompt != "first text")]
          sink: jsonl("back.jsonl")
        }
    """)
    run_pipeline(str(flow), "to_parquet")
    table = pq.read_table(tmp_path / "train.parquet")
    assert table.column_names == ["prompt", "completion"]
    assert table.to_pylist() == [{"prompt": "first text", "completion": "summary of 1"},
                                 {"prompt": "second text", "completion": "summary of 2"}]
    run_pipeline(str(flow), "from_parquet")
    assert read_jsonl(tmp_path / "back.jsonl") == [{"prompt": "second text", "completion": "summary of 2"}]


def test_files_source_reads_documents(tmp_path):
    (tmp_path / "docs/sub").mkdir(parents=True)
    (tmp_path / "docs/a.md").write_text("# Title\n\nSome text.\n", encoding="utf-8")
    (tmp_path / "docs/sub/b.txt").write_text("Plain text here.\n", encoding="utf-8")
    flow = pipeline_file(tmp_path, """
        pipeline docs {
          source: files("docs/**/*.*")
          steps: [map({ path: record.path, words: len(split(record.text)) })]
          sink: jsonl("docs.jsonl")
        }
    """)
    run_pipeline(str(flow))
    assert read_jsonl(tmp_path / "docs.jsonl") == [{"path": "docs/a.md", "words": 4},
                                                     {"path": "docs/sub/b.txt", "words": 3}]


def test_embed_upserts_with_stable_ids(tmp_path):
    from fmflow.retrieval.store import collection, open_store

    raw_lines(tmp_path / "raw.jsonl", [{"id": "1", "text": "Reset a password from the account page."},
                                       {"id": "2", "text": "Refunds take five working days."},
                                       {"id": "3", "text": "Refunds take five working days."}])
    flow = pipeline_file(tmp_path, """
        pipeline index {
          source: jsonl("raw.jsonl", type: Raw)
          steps: [
            embed(into: "faq", text: record.text, metadata: { id: record.id, lang: record.lang }),
            embed(into: "faq_by_id", text: record.text, id: "faq-" + record.id, store: "other_store"),
          ]
          sink: jsonl("indexed.jsonl")
        }
    """)
    for _ in range(2):  # running again adds nothing
        result = run_pipeline(str(flow))
        assert result.written == 3
        faq = collection(open_store(str(tmp_path / ".fmflow/store")), "faq", embedding=None)
        assert faq.count() == 2  # the same text is one entry
        by_id = collection(open_store(str(tmp_path / "other_store")), "faq_by_id", embedding=None)
        assert sorted(by_id.get()["ids"]) == ["faq-1", "faq-2", "faq-3"]
    got = faq.get(include=["documents", "metadatas"])
    metadata = {d: m for d, m in zip(got["documents"], got["metadatas"])}
    assert metadata["Refunds take five working days."] == {"pipeline": "index", "line": 3, "id": "3"}
    hits = faq.query(query_texts=["how long does a refund take"], n_results=1)
    assert hits["documents"][0] == ["Refunds take five working days."]


def test_limit_and_resume_rules(tmp_path):
    raw_lines(tmp_path / "raw.jsonl", [{"id": str(i), "text": f"t{i}"} for i in range(1, 11)])
    flow = pipeline_file(tmp_path, """
        pipeline first {
          source: jsonl("raw.jsonl", type: Raw)
          steps: [map(to_example)]
          sink: jsonl("first.jsonl")
        }
        pipeline second {
          source: jsonl("raw.jsonl", type: Raw)
          steps: []
          sink: jsonl("second.jsonl")
        }
    """)
    assert run_pipeline(str(flow), "first", limit=3).written == 3
    with pytest.raises(DataError, match="no unfinished run of pipeline 'first' to resume"):
        run_pipeline(str(flow), "first", resume=True)
    with pytest.raises(DataError, match="several pipelines"):
        run_pipeline(str(flow))
    with pytest.raises(DataError, match="no pipeline 'third'"):
        run_pipeline(str(flow), "third")
    with pytest.raises(DataError, match="--limit must be at least 1"):
        run_pipeline(str(flow), "first", limit=0)
    (tmp_path / "raw.jsonl").unlink()
    with pytest.raises(DataError, match="does not exist"):
        run_pipeline(str(flow), "second")
