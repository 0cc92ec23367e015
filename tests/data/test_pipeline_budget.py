"""`fmflow pipeline --budget USD` and `--model NAME=PROVIDER:MODEL` through real subprocesses, on the
local and the Dask engine: the budget stops the pipeline mid-way, `--resume` with a larger one finishes
it with each record in the sink exactly once; a replaced model answers instead of the declared one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from test_batch_cli import fmflow, no_traceback, write

# Each call is estimated at (ceil(len("Q: 1") / 4) + 4 + 10) tokens × $100 per 1M ≈ $0.0015 and costs $0.002.
PRICED = '''
    model m {
      provider: "replay"
      max_tokens: 10
      options: { cost: { input: 100, output: 100 }, cycle: true,
                 responses: [{ text: "1", tokens_in: 10, tokens_out: 10, cost: 0.002 }] }
    }
    prompt p(q: str) -> str {
      model: m
      template: "Q: {{ q }}"
    }
    type Q { n: int, q: str }
    type A { n: int, q: str, a: str }

    flow first(r: Q) -> A {
      return A(n: r.n, q: r.q, a: p(q: r.q))
    }

    flow second(r: A) -> A {
      return A(n: r.n, q: r.q, a: r.a + p(q: r.q))
    }

    pipeline answers {
      source: jsonl("in.jsonl", type: Q)
      steps: [
        map(first),
        dedupe(KEY),
        map(second),
      ]
      sink: jsonl("out.jsonl")
    }
'''

N = 10
COST = 0.002                     # what each call costs
WORK = "out.jsonl.fmflow-work"


def project(tmp_path: Path, key: str = "record.q") -> Path:
    write(tmp_path / "p.fmflow", PRICED.replace("KEY", key))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i, "q": str(i)}) + "\n" for i in range(1, N + 1)),
                                       encoding="utf-8")
    return tmp_path


def pipeline(tmp_path: Path, *args):
    result = fmflow(tmp_path, "pipeline", "p.fmflow", "--concurrency", "1", *args)
    no_traceback(result)
    return result


def sink(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]


def spent(result) -> float:
    return float(re.search(r"budget: \$([0-9.]+) of", result.stderr).group(1))


def test_the_budget_stops_the_pipeline_and_resume_with_more_runs_exactly_the_records_left(tmp_path):
    project(tmp_path)
    # The first stage spends 10 × $0.002; the last stage then has $0.005 left: it stops after two records.
    stopped = pipeline(tmp_path, "--budget", "0.025")
    assert stopped.returncode == 1, stopped.stderr
    assert "pipeline answers: stopped by the budget in step 3 (map)" in stopped.stderr
    assert "budget: $0.0240 of $0.0250 spent; reached: 8 records were not run (continue with --resume and " \
           "a larger --budget)" in stopped.stderr
    assert not (tmp_path / "out.jsonl").exists() and (tmp_path / WORK).is_dir()

    # Still too small: the run stops again, later; what was spent before counts.
    again = pipeline(tmp_path, "--resume", "--budget", "0.03")
    assert again.returncode == 1, again.stderr
    assert "budget: $0.0300 of $0.0300 spent; reached: 5 records were not run" in again.stderr
    assert not (tmp_path / "out.jsonl").exists()

    done = pipeline(tmp_path, "--resume", "--budget", "1")
    assert done.returncode == 0, done.stderr
    assert [(r["n"], r["a"]) for r in sink(tmp_path)] == [(i, "11") for i in range(1, N + 1)]  # each record once
    assert f"wrote {N} to" in done.stderr and not (tmp_path / WORK).exists()
    assert "budget: $0.0400 of $1.0000 spent" in done.stderr and "model calls 20 " in done.stderr  # each call once


def test_on_the_dask_engine_the_budget_stops_the_pipeline_and_resume_finishes_it(tmp_path):
    pytest.importorskip("distributed")
    project(tmp_path)
    # Each of the two workers has half the budget left ($0.017, then $0.007 in the last stage); how far
    # each gets depends on how the partitions fall, so only the stop and the spend are certain.
    stopped = pipeline(tmp_path, "--engine", "dask", "--budget", "0.034")
    assert stopped.returncode == 1, stopped.stderr
    assert re.search(r"stopped by the budget in step [13] \(map\)", stopped.stderr), stopped.stderr
    assert re.search(r"reached: \d+ records were not run", stopped.stderr)
    assert 0.0 < spent(stopped) <= 0.034
    assert not (tmp_path / "out.jsonl").exists() and (tmp_path / WORK).is_dir()
    done = pipeline(tmp_path, "--engine", "dask", "--resume", "--budget", "1")
    assert done.returncode == 0, done.stderr
    assert [(r["n"], r["a"]) for r in sink(tmp_path)] == [(i, "11") for i in range(1, N + 1)]  # each record once
    assert "on the dask engine" in done.stderr and spent(done) >= 0.04


def test_a_whole_data_step_stopped_by_the_budget_runs_again_on_resume(tmp_path):
    project(tmp_path, key="p(q: record.q) + record.q")      # dedupe asks the model for every record
    stopped = pipeline(tmp_path, "--budget", "0.025")
    assert stopped.returncode == 1, stopped.stderr
    assert "stopped by the budget in step 2 (dedupe)" in stopped.stderr
    assert f"reached: {N} records were not run" in stopped.stderr
    assert "budget: $0.0240 of $0.0250 spent" in stopped.stderr      # the step's own calls count
    done = pipeline(tmp_path, "--resume", "--budget", "1")
    assert done.returncode == 0, done.stderr
    assert [r["n"] for r in sink(tmp_path)] == list(range(1, N + 1))
    # 10 + 2 (stopped dedupe) + 10 (dedupe again: replay answers are not cached) + 10.
    assert "model calls 32 " in done.stderr and "budget: $0.0640 of $1.0000 spent" in done.stderr


def test_a_pipeline_without_a_budget_prints_no_budget_line(tmp_path):
    project(tmp_path)
    done = pipeline(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "budget:" not in done.stderr and "model calls 20 " in done.stderr


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_model_name_replaces_the_declared_model(tmp_path, engine):
    if engine == "dask":
        pytest.importorskip("distributed")
    project(tmp_path)
    done = pipeline(tmp_path, "--engine", engine, "--model", "m=replay:echo")
    assert done.returncode == 0, done.stderr
    # replay:echo answers with the prompt it was sent, not the declared model's scripted "1".
    assert [r["a"] for r in sink(tmp_path)] == [f"Q: {i}Q: {i}" for i in range(1, N + 1)]


def test_model_name_errors_and_a_resume_with_another_model(tmp_path):
    project(tmp_path)
    unknown = pipeline(tmp_path, "--model", "mm=replay:echo")
    assert unknown.returncode == 2
    assert "--model mm=…: p.fmflow declares no model 'mm'; did you mean 'm'?" in unknown.stderr
    not_a_model = pipeline(tmp_path, "--model", "p=replay:echo")
    assert not_a_model.returncode == 2 and "'p' is a prompt" in not_a_model.stderr
    stopped = pipeline(tmp_path, "--model", "m=replay:scripted", "--budget", "0.005")
    assert stopped.returncode == 1, stopped.stderr
    other = pipeline(tmp_path, "--resume", "--budget", "1")
    assert other.returncode == 2 and "the run started with another --model" in other.stderr
    same = pipeline(tmp_path, "--resume", "--budget", "1", "--model", "m=replay:scripted")
    assert same.returncode == 0, same.stderr
    assert [r["a"] for r in sink(tmp_path)] == ["11"] * N      # the same provider keeps the scripted replies
