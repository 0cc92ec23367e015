"""run_batch from Python (LANGUAGE.md §7): outputs, error lines, formats, order, limits, resume rules."""

from __future__ import annotations

import asyncio
import csv
import json
import textwrap
from pathlib import Path

import pytest

from fmflow.data import DataError, run_batch
from fmflow.data.batch import checkpoint_path
from fmflow.errors import FmflowCheckError

SCRIPTED = 'env("FMFLOW_TEST_PROVIDER", "scripted")'  # the checker knows only the real providers

FLOW = '''
    import "shared.fmflow"

    type Reply {
      text: str
      n: int
    }

    prompt say(q: str) -> str {
      model: m
      template: "Q: {{ q }}"
    }

    tool checked(n: int) -> int = python("tools:checked")

    flow go(q: str, n: int, tags: list[str]?) -> Reply {
      said = say(q)
      return Reply(text: said, n: checked(n) * 2)
    }
'''
SHARED = 'model m { provider: "replay", options: { echo: true } }\n'
TOOLS = '''
def checked(n):
    if n < 0:
        raise ValueError(f"{n} is negative")
    return n
'''


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A flow file with an import and a Python tool; .fmflow/ state stays in tmp_path."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "shared.fmflow", SHARED)
    write(tmp_path / "tools.py", TOOLS)
    return write(tmp_path / "flow.fmflow", FLOW)


def jsonl(path: Path, rows) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def outputs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def by_line(path: Path) -> dict[int, dict]:
    got = outputs(path)
    assert len({o["line"] for o in got}) == len(got), "a line was written twice"
    return {o["line"]: o for o in got}


def row(i: int) -> dict:
    return {"q": f"question {i}", "n": i, "tags": None}


def expected(i: int) -> dict:
    return {"line": i + 1, "output": {"text": f"Q: question {i}", "n": 2 * i}}


def test_a_thousand_records(project, tmp_path):
    data = jsonl(tmp_path / "in.jsonl", (row(i) for i in range(1000)))
    result = run_batch(str(project), str(data), str(tmp_path / "out.jsonl"), concurrency=32)
    got = by_line(tmp_path / "out.jsonl")
    assert sorted(got) == list(range(1, 1001))
    assert all(got[i + 1] == expected(i) for i in range(1000))
    assert (result.records, result.ok, result.failed, result.done_before) == (1000, 1000, 0, 0)
    assert result.usage.calls == 1000 and result.usage.tokens_in == 3000 and result.usage.tokens_out == 3000
    assert not (tmp_path / ".fmflow" / "runs").exists()  # no trace per record unless asked


def test_bad_records_become_error_lines_and_the_batch_goes_on(project, tmp_path):
    data = jsonl(tmp_path / "in.jsonl", [
        {"q": "fine", "n": 1, "tags": None},
        "{not json",
        {"q": "missing n", "tags": None},
        {"q": "wrong type", "n": "three", "tags": None},
        {"q": "unknown", "n": 1, "tags": None, "color": "red"},
        ["an", "array"],
        {"q": "fails in its tool", "n": -5, "tags": None},
        {"q": "also fine", "n": 2, "tags": ["a"]},
    ])
    result = run_batch(str(project), str(data), str(tmp_path / "out.jsonl"), ordered=True)
    got = outputs(tmp_path / "out.jsonl")
    assert [o["line"] for o in got] == list(range(1, 9))
    errors = {o["line"]: o["error"] for o in got if "error" in o}
    assert set(errors) == {2, 3, 4, 5, 6, 7}
    assert errors[2].startswith("line 2 is not valid JSON")
    assert errors[3] == "flow 'go' needs input 'n'"
    assert errors[4].startswith("input 'n': ") and "int" in errors[4]
    assert errors[5] == "flow 'go' has no input 'color' (inputs: q, n, tags)"
    assert errors[6] == "line 6 must be a JSON object of the inputs, got an array"
    assert "-5 is negative" in errors[7]
    assert got[7] == {"line": 8, "output": {"text": "Q: also fine", "n": 4}}
    assert (result.ok, result.failed) == (2, 6)


def test_csv_and_parquet_inputs_give_the_same_outputs(project, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [row(i) for i in range(50)]
    run_batch(str(project), str(jsonl(tmp_path / "in.jsonl", rows)), str(tmp_path / "a.jsonl"), ordered=True)
    with (tmp_path / "in.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["q", "n", "tags"])
        writer.writeheader()
        writer.writerows({**r, "tags": ""} for r in rows)  # an empty cell: null for `list[str]?`
    run_batch(str(project), str(tmp_path / "in.csv"), str(tmp_path / "b.jsonl"), ordered=True)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet", row_group_size=16)
    run_batch(str(project), str(tmp_path / "in.parquet"), str(tmp_path / "c.jsonl"), ordered=True)
    a = (tmp_path / "a.jsonl").read_text()
    assert a == (tmp_path / "b.jsonl").read_text() == (tmp_path / "c.jsonl").read_text()
    assert outputs(tmp_path / "a.jsonl")[7] == expected(7)


def test_ordered_output_follows_the_input(scripted, tmp_path, monkeypatch):
    """Replies come back in reverse order of asking; --ordered still writes line 1 first."""
    monkeypatch.chdir(tmp_path)
    started = []
    release = asyncio.Event()

    async def answer(config, request):
        started.append(request.messages[-1]["content"])
        if len(started) == 10:
            release.set()
        await release.wait()
        await asyncio.sleep(0.001 * (10 - int(request.messages[-1]["content"])))
        return request.messages[-1]["content"]

    scripted(answer)
    flow = write(tmp_path / "flow.fmflow", f'''
        model m {{ provider: {SCRIPTED} }}
        prompt echo(q: str) -> str {{
          model: m
          template: "{{{{ q }}}}"
        }}
        flow go(q: str) -> str {{
          return echo(q)
        }}
    ''')
    data = jsonl(tmp_path / "in.jsonl", ({"q": str(i)} for i in range(10)))
    run_batch(str(flow), str(data), str(tmp_path / "unordered.jsonl"), concurrency=10)
    assert [o["line"] for o in outputs(tmp_path / "unordered.jsonl")] == list(range(10, 0, -1))
    started.clear()
    release.clear()
    run_batch(str(flow), str(data), str(tmp_path / "ordered.jsonl"), concurrency=10, ordered=True)
    assert [o["line"] for o in outputs(tmp_path / "ordered.jsonl")] == list(range(1, 11))


def test_records_share_the_models_concurrency(scripted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    provider = scripted(["ok"], cycle=True, on_call=lambda config, request: asyncio.sleep(0.002))
    flow = write(tmp_path / "flow.fmflow", f'''
        model m {{
          provider: {SCRIPTED}
          concurrency: 3
        }}
        prompt ask(q: str) -> str {{
          model: m
          template: "{{{{ q }}}}"
        }}
        flow go(q: str) -> str {{
          a = ask(q)
          b = ask(q + "?")
          return a + b
        }}
    ''')
    data = jsonl(tmp_path / "in.jsonl", ({"q": str(i)} for i in range(60)))
    result = run_batch(str(flow), str(data), str(tmp_path / "out.jsonl"), concurrency=20)
    assert result.ok == 60 and len(provider.requests) == 120
    assert provider.max_in_flight == 3


def test_the_response_cache_is_shared_and_counted(project, tmp_path):
    write(tmp_path / "shared.fmflow", 'model m { provider: "replay", temperature: 0, options: { echo: true } }\n')
    data = jsonl(tmp_path / "in.jsonl", (row(i) for i in range(20)))
    first = run_batch(str(project), str(data), str(tmp_path / "a.jsonl"))
    second = run_batch(str(project), str(data), str(tmp_path / "b.jsonl"))
    assert (first.usage.calls, first.usage.cached) == (20, 0)
    assert (second.usage.calls, second.usage.cached) == (20, 20)
    nocache = run_batch(str(project), str(data), str(tmp_path / "c.jsonl"), cache=False)
    assert nocache.usage.cached == 0


def test_traces_on_request_one_per_record(project, tmp_path):
    data = jsonl(tmp_path / "in.jsonl", (row(i) for i in range(3)))
    run_batch(str(project), str(data), str(tmp_path / "out.jsonl"), trace=True)
    assert len(list((tmp_path / ".fmflow" / "runs").glob("*.jsonl"))) == 3


# --------------------------------------------------------------- resuming

def test_resume_after_a_finished_batch_runs_nothing(project, tmp_path):
    data = jsonl(tmp_path / "in.jsonl", (row(i) for i in range(10)))
    run_batch(str(project), str(data), str(tmp_path / "out.jsonl"))
    before = (tmp_path / "out.jsonl").read_bytes()
    again = run_batch(str(project), str(data), str(tmp_path / "out.jsonl"), resume=True)
    assert (tmp_path / "out.jsonl").read_bytes() == before
    assert (again.ran, again.ok, again.done_before) == (0, 10, 10)


def test_resume_continues_from_the_checkpoint(project, tmp_path):
    """Lines beyond the committed length (here: the last three lines, cut by hand from the
    checkpoint's view) are written again, exactly once."""
    import sqlite3

    data = jsonl(tmp_path / "in.jsonl", (row(i) for i in range(10)))
    out = tmp_path / "out.jsonl"
    run_batch(str(project), str(data), str(out), ordered=True)
    keep = sum(len(line) for line in out.read_bytes().splitlines(keepends=True)[:7])
    with sqlite3.connect(checkpoint_path(str(out))) as conn:  # as if the process died after line 7's commit
        progress = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'progress'").fetchone()[0])
        progress.update(watermark=7, position={"output": keep}, totals={"ok": 7, "failed": 0})
        conn.execute("UPDATE meta SET value = ? WHERE key = 'progress'", (json.dumps(progress),))
    with out.open("ab") as f:
        f.write(b'{"line": 11, "outp')  # a torn tail
    result = run_batch(str(project), str(data), str(out), resume=True, ordered=True)  # as it started: in input order
    assert [o["line"] for o in outputs(out)] == list(range(1, 11))
    assert all(o == expected(o["line"] - 1) for o in outputs(out))
    assert (result.ran, result.ok, result.done_before) == (3, 10, 7)


def test_changed_flow_import_or_input_is_refused_on_resume(project, tmp_path):
    data = jsonl(tmp_path / "in.jsonl", (row(i) for i in range(5)))
    out = str(tmp_path / "out.jsonl")
    run_batch(str(project), str(data), out)

    def refused(match, **changes):
        with pytest.raises(DataError, match=match):
            run_batch(str(project), str(data), out, resume=True, **changes)

    project.write_text(project.read_text() + "\n# a comment is a change too\n")
    refused("the flow file or a file it imports changed")
    project.write_text(textwrap.dedent(FLOW))
    (tmp_path / "shared.fmflow").write_text(SHARED.replace("echo: true", "echo: true, cycle: false"))
    refused("the flow file or a file it imports changed")
    (tmp_path / "shared.fmflow").write_text(SHARED)
    jsonl(data, (row(i) for i in range(6)))
    refused("the input file changed")
    jsonl(data, (row(i) for i in range(5)))
    refused("started with --model \\(none\\), now replay:echo", model="replay:echo")
    refused("started without --ordered", ordered=True)
    run_batch(str(project), str(data), out, resume=True)  # everything restored: accepted


def test_resume_needs_a_checkpoint_and_a_new_batch_needs_a_free_output(project, tmp_path):
    data = jsonl(tmp_path / "in.jsonl", [{"q": "a", "n": 1, "tags": None}])
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataError, match="there is no checkpoint of a batch writing"):
        run_batch(str(project), str(data), str(out), resume=True)
    out.write_text("precious\n")
    with pytest.raises(DataError, match="already exists: pass --overwrite"):
        run_batch(str(project), str(data), str(out))
    assert out.read_text() == "precious\n"
    with pytest.raises(DataError, match="choose one"):
        run_batch(str(project), str(data), str(out), resume=True, overwrite=True)
    run_batch(str(project), str(data), str(out), overwrite=True)
    assert outputs(out) == [{"line": 1, "output": {"text": "Q: a", "n": 2}}]


@pytest.mark.parametrize("output, match", [
    ("nowhere/out.jsonl", "the folder .* does not exist"),
    ("in.jsonl", "is the input file"),
    (".", "it is a folder"),
])
def test_bad_outputs_are_refused_before_anything_runs(project, tmp_path, output, match):
    data = jsonl(tmp_path / "in.jsonl", [{"q": "a", "n": 1, "tags": None}])
    with pytest.raises(DataError, match=match):
        run_batch(str(project), str(data), str(tmp_path / output))


def test_a_flow_file_with_errors(tmp_path):
    bad = write(tmp_path / "bad.fmflow", "flow go(q: str) -> str {\n  return nope\n}\n")
    data = jsonl(tmp_path / "in.jsonl", [{"q": "a"}])
    with pytest.raises(FmflowCheckError):
        run_batch(str(bad), str(data), str(tmp_path / "out.jsonl"))
    with pytest.raises(DataError, match="no flow 'other'"):
        run_batch(str(write(tmp_path / "ok.fmflow", "flow go(q: str) -> str {\n  return q\n}\n")), str(data),
                  str(tmp_path / "out.jsonl"), flow="other")


def test_memory_held_on_the_event_loop_does_not_grow_with_the_record_count(tmp_path, monkeypatch):
    # A one-statement flow on a model that answers at once: no record ever waits, yet each
    # model call cancels a timeout timer, which stays in the loop's heap until the loop gets a turn.
    from fmflow.data.driver import Driver
    from fmflow.runtime import TURN_EVERY

    flow = write(tmp_path / "instant.fmflow", """
        model instant { provider: "replay", options: { responses: ["ok"], cycle: true } }

        prompt ask(q: str) -> str {
          model: instant
          template: "Q: {{ q }}"
        }

        flow fast(q: str) -> str {
          return ask(q: q)
        }
    """)
    held: list[int] = []
    emit = Driver.emit

    def emit_counting_timers(self, outcome):
        held.append(len(asyncio.get_running_loop()._scheduled))
        emit(self, outcome)

    monkeypatch.setattr(Driver, "emit", emit_counting_timers)

    def most_timers_held(records: int) -> int:
        held.clear()
        data = jsonl(tmp_path / f"in-{records}.jsonl", ({"q": f"question {i}"} for i in range(records)))
        result = run_batch(str(flow), str(data), str(tmp_path / f"out-{records}.jsonl"), concurrency=4,
                           workdir=str(tmp_path))
        assert result.ok == records
        return max(held)

    # Every TURN_EVERY-th run gives the loop a turn, in which asyncio drops the cancelled
    # timers (all of them once they are more than 100 and over half of the heap); the loop's
    # turn runs every worker, so up to 4 × TURN_EVERY more are made before the next one.
    bound = 4 * TURN_EVERY + 110
    small, large = most_timers_held(300), most_timers_held(1200)
    assert small <= bound and large <= bound, (small, large, bound)


def test_models_that_name_no_declared_model_are_refused_before_anything_runs(project, tmp_path):
    from fmflow.data.pipeline import run_pipeline

    data = jsonl(tmp_path / "in.jsonl", [row(1)])
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataError, match=r"models\['mm'\]: .*declares no model 'mm'; did you mean 'm'\?"):
        run_batch(str(project), str(data), str(out), models={"mm": "replay:echo"})
    assert not out.exists()
    write(tmp_path / "p.fmflow", '''
        import "shared.fmflow"
        type Q { q: str }
        pipeline copy {
          source: jsonl("in.jsonl", type: Q)
          steps: [keep(true)]
          sink: jsonl("copied.jsonl")
        }
    ''')
    with pytest.raises(DataError, match=r"models\['copy'\]: 'copy' is a pipeline .*, not a model"):
        run_pipeline(str(tmp_path / "p.fmflow"), models={"copy": "replay:echo"})
    with pytest.raises(DataError, match="expects PROVIDER:NAME"):
        run_pipeline(str(tmp_path / "p.fmflow"), models={"m": "nonsense"})
    assert not (tmp_path / "copied.jsonl.fmflow-work").exists()
