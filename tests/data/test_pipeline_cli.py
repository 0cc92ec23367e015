"""`fmflow pipeline` through real subprocesses: SIGKILL and --resume give each record exactly once,
the Dask engine writes what the local engine writes, the summary, usage errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from test_batch_cli import committed_length, fmflow, no_traceback, write
from test_batch_cli import kill_when as kill_fmflow_when

SLOW_PIPELINE = '''
    model slow {
      provider: "replay"
      options: { responses: [{ text: "ok", delay: 0.01 }], cycle: true }
    }
    prompt ask(q: str) -> str {
      model: slow
      template: "{{ q }}"
    }
    type Question { n: int, q: str }
    type Answered { n: int, q: str, a: str }

    flow answer(r: Question) -> Answered {
      return Answered(n: r.n, q: r.q, a: ask(r.q) + " " + r.q)
    }

    flow recheck(r: Answered) -> Answered {
      return Answered(n: r.n, q: r.q, a: ask(r.q) + " " + r.a)
    }

    pipeline answers {
      source: jsonl("in.jsonl", type: Question)
      steps: [
        map(answer),
        dedupe(record.q),
        keep(record.n % 7 != 0),
        map(recheck),
      ]
      sink: jsonl("out.jsonl")
    }
'''


def questions(path: Path, n: int) -> Path:
    # Every tenth question repeats the one before: dedupe drops it.
    rows = [{"n": i, "q": f"q{i - 1 if i % 10 == 0 else i}"} for i in range(1, n + 1)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def expected(n: int) -> list[int]:
    return [i for i in range(1, n + 1) if i % 10 != 0 and i % 7 != 0]


def check_exactly_once(out: Path, n: int) -> None:
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["n"] for r in records] == expected(n)  # each surviving record once, in source order
    for r in records:
        assert r["a"] == f"ok ok {r['q']}", r


def kill_when(tmp_path: Path, ready, *args) -> bool:
    """Start the pipeline and SIGKILL it once ``ready()``; False when it finished first."""
    return kill_fmflow_when(tmp_path, ["pipeline", "p.fmflow", *args], ready)


def stage(tmp_path: Path, index: int) -> Path:
    return tmp_path / "out.jsonl.fmflow-work" / f"stage-{index}.jsonl"


def test_killed_twice_and_resumed_the_sink_holds_each_record_exactly_once(tmp_path):
    n = 600
    write(tmp_path / "p.fmflow", SLOW_PIPELINE)
    questions(tmp_path / "in.jsonl", n)
    # First kill: in the middle of the first stage, after a commit.
    assert kill_when(tmp_path, lambda: committed_length(stage(tmp_path, 0)) > 2000, "--concurrency", "4")
    assert not (tmp_path / "out.jsonl").exists()
    # Second kill: in the last stage (after the whole-data dedupe ran), after a commit.
    assert kill_when(tmp_path, lambda: committed_length(stage(tmp_path, 2)) > 2000, "--resume",
                     "--concurrency", "4")
    done = fmflow(tmp_path, "pipeline", "p.fmflow", "--resume")
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    check_exactly_once(tmp_path / "out.jsonl", n)
    assert not (tmp_path / "out.jsonl.fmflow-work").exists()
    assert f"wrote {len(expected(n))} to" in done.stderr


def test_killed_at_any_moment_and_resumed(tmp_path):
    n = 300
    write(tmp_path / "p.fmflow", SLOW_PIPELINE)
    questions(tmp_path / "in.jsonl", n)
    work = tmp_path / "out.jsonl.fmflow-work"
    for delay in (1.0, 0.6, 0.9, 0.4):
        started = time.monotonic()
        resume = ("--resume",) if work.exists() else ()
        kill_when(tmp_path, lambda: time.monotonic() - started > delay, *resume)
    if work.exists() or not (tmp_path / "out.jsonl").exists():
        done = fmflow(tmp_path, "pipeline", "p.fmflow", *(("--resume",) if work.exists() else ()))
        assert done.returncode == 0, done.stderr
    check_exactly_once(tmp_path / "out.jsonl", n)


def test_summary_exit_status_and_usage_errors(tmp_path):
    write(tmp_path / "p.fmflow", SLOW_PIPELINE)
    questions(tmp_path / "in.jsonl", 30)
    with (tmp_path / "in.jsonl").open("a") as f:
        f.write('{"n": "x", "q": "bad"}\n')
    result = fmflow(tmp_path, "pipeline", "p.fmflow", "answers")
    assert result.returncode == 1  # one record failed
    assert "pipeline answers: 31 records read" in result.stderr
    assert "step 2 (dedupe)" in result.stderr and "1 failed: see" in result.stderr
    usage = fmflow(tmp_path, "pipeline", "p.fmflow", "--resume")
    assert usage.returncode == 2 and "no unfinished run of pipeline 'answers'" in usage.stderr
    other = fmflow(tmp_path, "pipeline", "p.fmflow", "--name", "nope")
    assert other.returncode == 2 and "no pipeline 'nope'" in other.stderr
    no_traceback(other)


def test_a_changed_file_is_refused_on_resume(tmp_path):
    write(tmp_path / "p.fmflow", SLOW_PIPELINE)
    questions(tmp_path / "in.jsonl", 300)
    # Two at a time, the first stage takes over a second: a periodic commit comes while it runs (with
    # the default 16, an idle machine finished the stage, and the pipeline, between two polls).
    assert kill_when(tmp_path, lambda: committed_length(stage(tmp_path, 0)) > 0, "--concurrency", "2")
    questions(tmp_path / "in.jsonl", 301)
    refused = fmflow(tmp_path, "pipeline", "p.fmflow", "--resume")
    assert refused.returncode == 2 and "the source changed since the run started" in refused.stderr
    again = fmflow(tmp_path, "pipeline", "p.fmflow")
    assert again.returncode == 0 and "started over" in again.stderr
    check_exactly_once(tmp_path / "out.jsonl", 301)


def test_the_dask_engine_writes_what_the_local_engine_writes(tmp_path):
    pytest.importorskip("distributed")
    write(tmp_path / "p.fmflow", SLOW_PIPELINE)
    questions(tmp_path / "in.jsonl", 200)
    with (tmp_path / "in.jsonl").open("a") as f:
        f.write('{"n": 1.5, "q": "bad"}\nnot json\n')
    local = fmflow(tmp_path, "pipeline", "p.fmflow", "--concurrency", "8")
    assert local.returncode == 1, local.stderr
    (tmp_path / "out.jsonl").rename(tmp_path / "local.jsonl")
    (tmp_path / "out.jsonl.errors.jsonl").rename(tmp_path / "local.errors.jsonl")
    dask = fmflow(tmp_path, "pipeline", "p.fmflow", "--concurrency", "8", "--engine", "dask")
    no_traceback(dask)
    assert dask.returncode == 1 and "on the dask engine" in dask.stderr, dask.stderr
    assert (tmp_path / "out.jsonl").read_text() == (tmp_path / "local.jsonl").read_text()
    assert (tmp_path / "out.jsonl.errors.jsonl").read_text() == (tmp_path / "local.errors.jsonl").read_text()
    check_exactly_once(tmp_path / "out.jsonl", 200)
