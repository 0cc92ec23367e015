"""`--budget USD` (LANGUAGE.md §10): no model call starts once the cost would pass the budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fmflow
from fmflow.providers import ModelConfig
from fmflow.runtime.budget import Budget, BudgetExceeded, estimate_cost
from fmflow.runtime.errors import FlowRuntimeError
from flowfiles import write

ROOT = Path(__file__).resolve().parents[2]

# Each call is estimated at (ceil(len("Q: 1") / 4) + 4 + 10) tokens × $100 per 1M = $0.0015 and costs $0.002.
PRICED = '''\
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

flow chain(q: str) -> str {
  a = p(q: q)
  b = p(q: a)
  c = p(q: b)
  return c
}

flow fan(qs: list[str]) -> list[str] {
  out = [p(q: q) for q in qs]
  return out
}
'''


def model(**kw) -> ModelConfig:
    return ModelConfig(name="m", provider="openai", **kw)


def test_estimate_counts_the_prompt_and_max_tokens_at_the_price():
    messages = [{"role": "system", "content": "x" * 40}, {"role": "user", "content": "y" * 41}]
    tokens_in = 10 + 11 + 2 * 4
    assert estimate_cost(model(model="gpt-4o-mini", max_tokens=100), messages) == pytest.approx(
        (tokens_in * 0.15 + 100 * 0.60) / 1e6)
    assert estimate_cost(model(model="gpt-4o-mini"), messages) == pytest.approx((tokens_in * 0.15 + 1024 * 0.60) / 1e6)
    assert estimate_cost(model(model="my-local-model"), messages) is None     # no price: no estimate
    assert estimate_cost(model(model="x", options={"cost": {"input": 1, "output": 2}}, max_tokens=1),
                         messages) == pytest.approx((tokens_in + 2) / 1e6)


def test_budget_admits_calls_while_spent_and_in_flight_leave_room():
    budget = Budget(0.01)
    config = model(options={"cost": {"input": 0, "output": 1000}}, max_tokens=4)   # $0.004 a call
    first = budget.start(config, [], "call 1")
    second = budget.start(config, [], "call 2")             # 0.008 in flight
    with pytest.raises(BudgetExceeded, match=r"budget of \$0.0100 is reached: \$0.0000 spent"):
        budget.start(config, [], "call 3")                   # 0.012 would pass it
    budget.end(first, 0.001)                                  # the real cost replaces the estimate
    budget.end(second, None)                                  # unknown cost counts 0
    assert budget.spent == pytest.approx(0.001) and budget.in_flight == 0
    budget.start(config, [], "call 4")
    assert budget.refused == 1 and budget.reached


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "1", True])
def test_a_budget_is_a_number_of_usd(bad):
    with pytest.raises(ValueError):
        Budget(bad)


def test_a_run_stops_before_the_call_that_would_pass_the_budget(tmp_path):
    flow = fmflow.load(write(tmp_path, PRICED), "chain", workdir=tmp_path, budget=0.005)
    with pytest.raises(BudgetExceeded) as info:
        flow.run(q="1")
    assert isinstance(info.value, FlowRuntimeError)
    message = str(info.value)
    assert "the budget of $0.0050 is reached: $0.0040 spent" in message
    assert "prompt 'p' on model 'm' would cost about $0.0015 more; it was not started" in message
    assert "flow.fmflow:16, flow 'chain'" in message
    [path] = (tmp_path / ".fmflow" / "runs").glob("*.jsonl")
    trace = [json.loads(line) for line in path.read_text().splitlines()]
    models = [r for r in trace if r.get("kind") == "model"]
    assert [m["error"] is None for m in models] == [True, True, False]
    assert "budget" in models[-1]["error"]
    # Each run has its own budget of that amount.
    with pytest.raises(BudgetExceeded):
        flow.run(q="1")
    assert fmflow.load(write(tmp_path, PRICED), "chain", workdir=tmp_path, budget=0.01).run(q="1") == "1"


def test_calls_in_flight_count_against_the_budget(tmp_path):
    flow = fmflow.load(write(tmp_path, PRICED), "fan", workdir=tmp_path, budget=0.004)
    with pytest.raises(BudgetExceeded):
        flow.run(qs=["1", "2", "3", "4", "5"])
    [trace] = (tmp_path / ".fmflow" / "runs").glob("*.jsonl")
    models = [json.loads(line) for line in trace.read_text().splitlines() if '"kind":"model"' in line]
    assert sum(1 for m in models if m["error"] is None) == 2   # 2 × 0.0015 in flight, a third would pass 0.004


def test_cache_hits_cost_nothing(tmp_path):
    cached = PRICED.replace("max_tokens: 10", "max_tokens: 10\n  temperature: 0")
    path = write(tmp_path, cached)
    assert fmflow.load(path, "chain", workdir=tmp_path).run(q="1") == "1"    # fills the cache
    assert fmflow.load(path, "chain", workdir=tmp_path, budget=0).run(q="1") == "1"


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "fmflow", *args], cwd=folder, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_fmflow_run_with_a_budget(tmp_path):
    path = write(tmp_path, PRICED)
    stopped = cli(tmp_path, "run", str(path), "--flow", "chain", "-i", "q=1", "--budget", "0.005")
    assert stopped.returncode == 1 and stopped.stdout == ""
    assert "the budget of $0.0050 is reached: $0.0040 spent" in stopped.stderr
    done = cli(tmp_path, "run", str(path), "--flow", "chain", "-i", "q=1", "--budget", "$1")
    assert done.returncode == 0 and done.stdout.strip() == "1"
    assert "budget: $0.0060 of the $1.0000 budget spent" in done.stderr
    bad = cli(tmp_path, "run", str(path), "--flow", "chain", "-i", "q=1", "--budget", "lots")
    assert bad.returncode == 2 and "a budget is a number of USD" in bad.stderr


def test_fmflow_batch_stops_at_the_budget_and_resume_with_more_continues(tmp_path):
    single = PRICED + '''
flow one(q: str) -> str {
  a = p(q: q)
  return a
}
'''
    path = write(tmp_path, single)
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"q": str(i)}) + "\n" for i in range(1, 11)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    first = cli(tmp_path, "batch", str(path), "--flow", "one", "--input", str(data), "--output", str(out),
                "--concurrency", "1", "--budget", "0.005")
    assert first.returncode == 1
    assert "budget: $0.0040 of $0.0050 spent; reached: 8 records were not run" in first.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["line"] for line in lines] == list(range(1, 11))
    assert [("output" in line) for line in lines] == [True, True] + [False] * 8
    assert "the budget of $0.0050 is reached: $0.0040 spent" in lines[2]["error"]
    assert all("not run: the budget of $0.0050 was reached" in line["error"] for line in lines[3:])

    again = cli(tmp_path, "batch", str(path), "--flow", "one", "--input", str(data), "--output", str(out),
                "--concurrency", "1", "--resume", "--budget", "0.05")
    assert again.returncode == 0, again.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["line"] for line in lines) == list(range(1, 11))        # each record exactly once
    assert all(line.get("output") == "1" for line in lines)
    assert "budget: $0.0200 of $0.0500 spent" in again.stderr
