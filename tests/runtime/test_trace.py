"""Run traces: file shape, truncation, secrets, lookup and rendering."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import pytest

from fmflow.observe.trace import MAX_DEPTH, TraceWriter
from fmflow.observe.trace_view import TraceNotFound, find_run, read_trace, render_trace

SECRET = "sk-test-0123456789abcdef"


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def spans_of(path):
    return [r for r in lines(path) if r["type"] == "span"]


def depth(value):
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


# -- the file ----------------------------------------------------------------


def test_file_shape(tmp_path):
    with TraceWriter(tmp_path / "runs", flow="main", file="app.fmflow") as trace:
        assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", trace.run_id)
        root = trace.start_span("flow", "main", inputs={"q": "hi"})
        call = trace.start_span("call", "summarize", parent=root.id, line=7,
                                inputs={"text": "long text"}, model="m1")
        call.set(provider="openai", tokens_in=12, tokens_out=3, cost=0.001, cache_hit=False,
                 retries=1, prompt={"name": "summarize", "version": 2, "hash": "abc"},
                 attempts=[{"error": "429"}, {"ok": True}])
        call.end(output="short")
        root.end(output={"answer": "short"})
    path = tmp_path / "runs" / f"{trace.run_id}.jsonl"
    assert trace.path == path
    records = lines(path)
    assert [r["type"] for r in records] == ["run", "span", "span", "end"]
    header, call_rec, root_rec, end = records
    assert header == {"type": "run", "run_id": trace.run_id, "trace_id": trace.trace_id, "flow": "main",
                      "file": "app.fmflow", "started": header["started"]}
    assert re.fullmatch(r"[0-9a-f]{32}", trace.trace_id)
    assert call_rec["parent"] == root_rec["id"] and root_rec["parent"] is None
    assert call_rec["id"] != root_rec["id"]
    for key in ("id", "parent", "kind", "name", "line", "start", "end", "duration_ms",
                "inputs", "output", "error"):
        assert key in call_rec
    assert call_rec["kind"] == "call" and call_rec["name"] == "summarize" and call_rec["line"] == 7
    assert call_rec["inputs"] == {"text": "long text"}
    assert call_rec["output"] == "short" and call_rec["error"] is None
    assert call_rec["model"] == "m1" and call_rec["tokens_in"] == 12 and call_rec["retries"] == 1
    assert call_rec["prompt"] == {"name": "summarize", "version": 2, "hash": "abc"}
    assert call_rec["attempts"] == [{"error": "429"}, {"ok": True}]
    assert call_rec["end"] >= call_rec["start"] and call_rec["duration_ms"] >= 0
    assert root_rec["output"] == {"answer": "short"}
    assert end["type"] == "end" and end["status"] == "ok" and "error" not in end
    assert end["run_id"] == trace.run_id and end["duration_ms"] >= 0 and end["ended"] > 0


def test_given_run_id_and_error_status(tmp_path):
    trace = TraceWriter(tmp_path, run_id="myrun")
    span = trace.start_span("call", "x")
    span.end(error=ValueError("bad value"))
    span.end(output="ignored")             # a second end writes nothing
    trace.close("error", error=RuntimeError("boom"))
    trace.close("ok")                      # a second close writes nothing
    records = lines(tmp_path / "myrun.jsonl")
    assert [r["type"] for r in records] == ["run", "span", "end"]
    assert records[1]["error"] == "ValueError: bad value"
    assert records[2]["status"] == "error" and records[2]["error"] == "RuntimeError: boom"


def test_context_manager_records_exception(tmp_path):
    with pytest.raises(KeyError):
        with TraceWriter(tmp_path, run_id="r") as trace:
            with trace.start_span("step", "s"):
                raise KeyError("k")
    records = lines(tmp_path / "r.jsonl")
    assert records[1]["error"] == "KeyError: 'k'"
    assert records[-1]["status"] == "error"


def test_crash_safety_lines_present_before_close(tmp_path):
    trace = TraceWriter(tmp_path, run_id="crash")
    trace.start_span("call", "a").end(output=1)
    trace.start_span("call", "b").end(output=2)
    # No close: the background writer puts every finished span on disk within a fraction of a second.
    deadline = time.monotonic() + 5
    while len(records := read_trace(tmp_path / "crash.jsonl") if trace.path.exists() else []) < 3:
        assert time.monotonic() < deadline, records
        time.sleep(0.02)
    assert [r.get("name") for r in records] == [None, "a", "b"]
    # A line cut short by a crash is skipped when reading.
    with open(tmp_path / "crash.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"type": "span", "id": "s9", "na')
    assert len(read_trace(tmp_path / "crash.jsonl")) == 3
    assert "status unfinished" in render_trace(read_trace(tmp_path / "crash.jsonl"))


def test_spans_open_at_close_are_written_unfinished(tmp_path):
    trace = TraceWriter(tmp_path, run_id="r")
    trace.start_span("call", "never-ended")
    trace.close("error", error="cancelled")
    span = spans_of(tmp_path / "r.jsonl")[0]
    assert span["name"] == "never-ended" and span["unfinished"] is True


def test_attrs_do_not_overwrite_fixed_fields(tmp_path):
    trace = TraceWriter(tmp_path, run_id="r")
    span = trace.start_span("call", "a")
    span.set(id="evil", type="evil", output="from set", error="from set")
    span.end()
    trace.close()
    rec = spans_of(tmp_path / "r.jsonl")[0]
    assert rec["type"] == "span" and rec["id"] != "evil"
    assert rec["output"] == "from set" and rec["error"] == "from set"


def test_non_json_values_are_converted(tmp_path):
    @dataclass
    class Doc:
        text: str
        score: float

    trace = TraceWriter(tmp_path, run_id="r")
    trace.start_span("call", "a", inputs={"doc": Doc("t", 0.5), "tags": {"x"},
                                          "nan": float("nan"), 3: "int key"}).end(output=object())
    trace.close()
    rec = spans_of(tmp_path / "r.jsonl")[0]
    assert rec["inputs"]["doc"] == {"text": "t", "score": 0.5}
    assert rec["inputs"]["tags"] == ["x"] and rec["inputs"]["nan"] == "nan"
    assert rec["inputs"]["3"] == "int key"
    assert rec["output"].startswith("<object object")


def test_custom_to_jsonable(tmp_path):
    class Value:
        pass

    trace = TraceWriter(tmp_path, run_id="r", to_jsonable=lambda v: {"custom": type(v).__name__})
    trace.start_span("call", "a").end(output=Value())
    trace.close()
    assert spans_of(tmp_path / "r.jsonl")[0]["output"] == {"custom": "Value"}


# -- truncation ------------------------------------------------------------------


def test_truncation(tmp_path):
    nested = current = {}
    for _ in range(20):
        current["next"] = {}
        current = current["next"]
    trace = TraceWriter(tmp_path, run_id="r")
    trace.start_span("call", "a", inputs={"long": "x" * 5000, "items": list(range(120)),
                                          "nested": nested, "short": "y" * 2000}).end()
    trace.close()
    inputs = spans_of(tmp_path / "r.jsonl")[0]["inputs"]
    assert inputs["long"] == "x" * 2000 + "…[3000 more chars]"
    assert inputs["short"] == "y" * 2000
    assert inputs["items"] == list(range(50)) + ["…[70 more items]"]
    assert depth(inputs["nested"]) <= MAX_DEPTH
    assert "nested deeper than" in json.dumps(inputs["nested"], ensure_ascii=False)


def test_truncation_never_leaves_half_a_secret(tmp_path):
    text = "a" * 1990 + SECRET + "b" * 100      # the secret straddles the cut
    trace = TraceWriter(tmp_path, run_id="r", secrets=[SECRET])
    trace.start_span("call", "a").end(output=text)
    trace.close()
    raw = (tmp_path / "r.jsonl").read_text(encoding="utf-8")
    assert SECRET[:8] not in raw


# -- secrets -----------------------------------------------------------------------


def test_secrets_are_masked_everywhere(tmp_path):
    trace = TraceWriter(tmp_path / "runs", secrets=[SECRET, "", "abc"], flow="main",
                        file=f"/home/{SECRET}/app.fmflow")
    span = trace.start_span(
        "call", "a",
        inputs={"deep": {"list": [{"text": f"my key is {SECRET}!"}]}},
        headers={"Authorization": "Bearer xyz-not-listed", "X-Api-Key": "k-not-listed"},
    )
    span.set(note=f"attr with {SECRET}", tokens_in=5, max_tokens=10, abc="abc stays")
    span.end(error=RuntimeError(f"401 for key {SECRET}"))
    other = trace.start_span("call", "b", inputs={"password": "hunter2", "api_key": "k1",
                                                  "token": "t1", "client_secret": "c1",
                                                  f"key-{SECRET}": "v"})
    other.end(output={"access_token": "t2", "text": "fine"})
    trace.close("error", error=f"failed with {SECRET}")

    raw = trace.path.read_text(encoding="utf-8")
    for leaked in (SECRET, "xyz-not-listed", "k-not-listed", "hunter2", '"k1"', '"t1"',
                   '"c1"', '"t2"'):
        assert leaked not in raw
    a, b = spans_of(trace.path)
    assert a["inputs"]["deep"]["list"][0]["text"] == "my key is ***!"
    assert a["headers"] == {"Authorization": "***", "X-Api-Key": "***"}
    assert a["note"] == "attr with ***"
    assert a["error"] == "RuntimeError: 401 for key ***"
    # Counters named like tokens stay; secrets shorter than 4 chars are ignored.
    assert a["tokens_in"] == 5 and a["max_tokens"] == 10 and a["abc"] == "abc stays"
    assert b["inputs"] == {"password": "***", "api_key": "***", "token": "***",
                           "client_secret": "***", "key-***": "v"}
    assert b["output"] == {"access_token": "***", "text": "fine"}
    header, end = lines(trace.path)[0], lines(trace.path)[-1]
    assert header["file"] == "/home/***/app.fmflow"
    assert end["error"] == "failed with ***"


# -- lookup --------------------------------------------------------------------------


def make_run(runs, run_id, started_offset=0.0):
    TraceWriter(runs, run_id=run_id, flow="f").close()
    # Rewrite the header so that "started" orders the runs deterministically.
    path = runs / f"{run_id}.jsonl"
    records = lines(path)
    records[0]["started"] = 1_700_000_000 + started_offset
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_find_run(tmp_path):
    runs = tmp_path / "runs"
    a = make_run(runs, "20240101-100000-aaaaaa", 0)
    b = make_run(runs, "20240101-110000-bbbbbb", 10)
    c = make_run(runs, "20240102-090000-cccccc", 20)
    assert find_run(runs, "20240101-100000-aaaaaa") == a
    assert find_run(runs, "20240101-11") == b
    assert find_run(runs, "20240102") == c
    assert find_run(runs, "last") == c
    assert find_run(runs, str(a)) == a
    with pytest.raises(TraceNotFound, match="ambiguous.*20240101-100000-aaaaaa"):
        find_run(runs, "20240101")


def test_missing_run_lists_recent_runs(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "20240101-100000-aaaaaa", 0)
    make_run(runs, "20240102-090000-cccccc", 20)
    with pytest.raises(TraceNotFound) as info:
        find_run(runs, "nope")
    message = str(info.value)
    assert "no run 'nope'" in message
    assert message.index("20240102-090000-cccccc") < message.index("20240101-100000-aaaaaa")


def test_no_runs_at_all(tmp_path):
    with pytest.raises(TraceNotFound, match="no runs recorded"):
        find_run(tmp_path / "absent", "last")


# -- rendering ------------------------------------------------------------------------


def test_render_tree(tmp_path):
    trace = TraceWriter(tmp_path, run_id="r1", flow="answer", file="qa.fmflow")
    root = trace.start_span("flow", "answer")
    first = trace.start_span("call", "retrieve", parent=root.id, line=4)
    first.end(output=["doc"])
    second = trace.start_span("call", "summarize", parent=root, line=5, model="gpt-4o-mini")
    inner = trace.start_span("attempt", "try-1", parent=second.id)
    inner.end(error="429 Too Many Requests")
    second.set(tokens_in=120, tokens_out=45, cache_hit=True, retries=1, cost=0.002,
               prompt={"name": "summarize", "version": 3, "hash": "h"})
    second.end(output="s")
    root.end(output="s")
    trace.close("ok")

    text = render_trace(read_trace(trace.path))
    out = text.splitlines()
    assert out[0].startswith("run r1  flow answer  file qa.fmflow")
    assert out[1].startswith("status ok  total ")
    assert re.match(r"└─ flow answer  [\d.]+ ms$", out[2])
    assert out[3].startswith("   ├─ call retrieve (line 4)  ")
    assert out[4].startswith("   └─ call summarize (line 5)  ")
    for part in ("prompt summarize v3", "model gpt-4o-mini", "tokens 120 in / 45 out",
                 "cache hit", "retries 1"):
        assert part in out[4]
    assert out[5].startswith("      └─ attempt try-1  ")
    assert "ERROR 429 Too Many Requests" in out[5]
    assert out[6] == "4 spans, tokens 120 in / 45 out, 1 cache hit, 1 error, cost $0.0020"


def test_render_orders_children_by_start_and_keeps_orphans():
    records = [
        {"type": "run", "run_id": "r", "flow": "f"},
        {"type": "span", "id": "s3", "parent": "s1", "kind": "call", "name": "late",
         "start": 3.0, "duration_ms": 1},
        {"type": "span", "id": "s2", "parent": "s1", "kind": "call", "name": "early",
         "start": 2.0, "duration_ms": 1},
        {"type": "span", "id": "s1", "parent": None, "kind": "flow", "name": "f",
         "start": 1.0, "duration_ms": 5},
        {"type": "span", "id": "s9", "parent": "gone", "kind": "call", "name": "orphan",
         "start": 4.0, "duration_ms": 1},
        {"type": "span", "id": "c1", "parent": "c2", "kind": "call", "name": "cycle-a",
         "start": 5.0},
        {"type": "span", "id": "c2", "parent": "c1", "kind": "call", "name": "cycle-b",
         "start": 6.0},
        {"type": "end", "status": "error", "error": "boom", "duration_ms": 9},
    ]
    text = render_trace(records)
    assert text.index("early") < text.index("late") < text.index("orphan")
    assert "cycle-a" in text and "cycle-b" in text
    assert "status error  total 9.0 ms  error boom" in text


def test_the_direct_span_line_is_the_record_as_json(tmp_path):
    """Span lines are put together by hand for speed (the OTLP exporter gets the record dict):
    both must say the same, secrets masked alike."""
    trace = TraceWriter(tmp_path, run_id="same", secrets=[SECRET])
    root = trace.start_span("flow", f"main {SECRET}", inputs={"q": f"k={SECRET}", "api_key": "k", 3: "x"}, line=4)
    spans = [
        trace.start_span("tool", "t", parent=root, inputs={"x": "hi", "token": "t1"}),
        trace.start_span("model", "m", parent=root.id, inputs={"messages": [{"role": "user", "content": "é\n\""}]},
                         model="gpt", tokens_in=3, cost=0.5, note=f"a {SECRET}", id="evil", output="attr"),
        trace.start_span("assign", "x" * 100, parent=root, line=None, inputs={"long": "y" * 3000}),
        trace.start_span("branch", "if", parent=root, line=7),
    ]
    ends = [("out", None), (None, None), ({"a": [1, 2.5, None]}, RuntimeError(f"bad {SECRET}")), (True, "e")]
    for span, (output, error) in zip(spans, ends):
        span.end(output=output, error=error)
        item = trace._pending.pop()
        assert trace._span_line(item) == json.dumps(trace._span_record(item), ensure_ascii=False,
                                                    separators=(",", ":"))
        assert SECRET not in trace._span_line(item)
    trace.close()
