"""`fmflow eval` end to end: statistics of a known dataset, stored outputs reused, a killed eval resumed,
--fail-under, model variants, judges and their traces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.clitools import ROOT, fmflow_cmd, write
from tests.evals.evaltools import calls as _calls, eval_json as _json, make_project, records as _records
from tests.evals.evaltools import run_eval as _eval

@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path)


def test_rates_means_intervals_and_paired_tests(project):
    from fmflow.evals.statistics import mcnemar_exact, wilson

    summary = _json(project, "--name", "quality")
    first, second = summary["variants"]
    assert (first["name"], second["name"]) == ("answer@1", "answer@2")
    assert summary["records"] == 10 and first["n"] == 10 and first["errors"] == 0
    correct1, correct2 = first["metrics"]["correct"], second["metrics"]["correct"]
    assert (correct1["kind"], correct1["value"], correct1["n"]) == ("rate", 0.6, 10)
    assert (correct1["low"], correct1["high"]) == pytest.approx(wilson(6, 10))
    assert correct2["value"] == 0.2 and (correct2["low"], correct2["high"]) == pytest.approx(wilson(2, 10))
    lengths = [len(f"question {i}?") for i in range(1, 11)]
    assert first["metrics"]["long"]["value"] == pytest.approx(sum(lengths) / 10)
    assert first["metrics"]["long"]["low"] <= first["metrics"]["long"]["value"] <= first["metrics"]["long"]["high"]
    assert first["latency"]["p50"] is not None and first["latency"]["p95"] >= first["latency"]["p50"]
    assert first["calls"] == 10 and first["tokens_in"] > 0
    (pair,) = summary["pairs"]
    correct = pair["metrics"]["correct"]
    # b = 6 records only answer@1 gets right, c = 2 only answer@2 does: p = 2 · P(X ≤ 2 | 8, ½) = 74/256.
    assert (correct["test"], correct["a_only"], correct["b_only"]) == ("mcnemar", 6, 2)
    assert correct["p_value"] == pytest.approx(74 / 256) == pytest.approx(mcnemar_exact(6, 2))
    assert sorted(d["line"] for d in correct["disagreements"]) == list(range(1, 9))
    assert correct["difference"] == pytest.approx(-0.4)
    longer = pair["metrics"]["long"]
    assert longer["test"] == "paired bootstrap" and longer["difference"] == pytest.approx(3.0)
    assert longer["p_value"] < 0.001 and longer["disagree"] == 10


def test_text_report_lists_the_table_and_the_disagreeing_records(project):
    result = _eval(project, "--name", "quality")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "answer@1  0.600 [0.313, 0.832]" in out
    assert "McNemar exact p = 0.289, n = 10; 8 disagree (lines 1, 2, 3, 4, 5, 6, 7, 8)" in out


def test_adding_a_metric_scores_the_stored_outputs_without_running_the_flow(project):
    _json(project, "--name", "quality")
    assert _calls(project) == 20
    source = (project / "evals.fmflow").read_text()
    (project / "evals.fmflow").write_text(source.replace("long: len(output),",
                                                         "long: len(output),\n    asks: \"?\" in output,"))
    summary = _json(project, "--name", "quality")
    assert _calls(project) == 20                      # no flow ran again
    assert [(v["ran"], v["reused"]) for v in summary["variants"]] == [(0, 10), (0, 10)]
    assert summary["variants"][0]["metrics"]["asks"]["value"] == 1.0
    # Changing what the flow runs (not the eval) runs every record again.
    (project / "evals.fmflow").write_text(source.replace('"""A: {{ question }}"""', '"""B: {{ question }}"""'))
    summary = _json(project, "--name", "quality")
    assert _calls(project) == 40
    assert [v["ran"] for v in summary["variants"]] == [10, 10]


def test_no_cache_runs_everything_again(project):
    _json(project, "--name", "quality")
    summary = _json(project, "--name", "quality", "--no-cache")
    assert _calls(project) == 40 and [v["reused"] for v in summary["variants"]] == [0, 0]


def test_a_killed_eval_resumes_where_it_stopped(project):
    env = {k: v for k, v in os.environ.items() if k not in ("FMFLOW_DEBUG", "FMFLOW_STRICT")}
    env.update(PYTHONPATH=str(ROOT), EVAL_TEST_DELAY="0.4")
    process = subprocess.Popen([sys.executable, "-m", "fmflow", "eval", "evals.fmflow", "--name", "quality",
                                "--concurrency", "1"], cwd=project, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while _calls(project) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # past a checkpoint commit (every second)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    before = _calls(project)
    assert 8 <= before < 20, before
    summary = _json(project, "--name", "quality")
    reused = sum(v["reused"] for v in summary["variants"])
    assert reused >= 4                                   # committed records were not run again
    assert _calls(project) - before == 20 - reused       # and every other record ran once more
    assert [v["n"] for v in summary["variants"]] == [10, 10]
    assert summary["variants"][0]["metrics"]["correct"]["value"] == 0.6
    assert summary["variants"][1]["metrics"]["correct"]["value"] == 0.2


def test_fail_under(project):
    failing = _eval(project, "--name", "quality", "--fail-under", "correct=0.5")
    assert failing.returncode == 1
    assert "answer@2: correct is 0.2, under 0.5" in failing.stderr
    assert "answer@1" not in failing.stderr
    assert _eval(project, "--name", "quality", "--fail-under", "correct=0.2", "--fail-under", "long=5").returncode == 0
    for bad, says in (("correct", "METRIC=VALUE"), ("correct=high", "METRIC=VALUE"), ("nope=1", "names no metric")):
        result = _eval(project, "--name", "quality", "--fail-under", bad)
        assert result.returncode == 2 and says in result.stderr, result.stderr
    summary = json.loads(_eval(project, "--name", "quality", "--json", "--fail-under", "correct=0.5").stdout)
    assert summary["failed_bounds"] == ["answer@2: correct is 0.2, under 0.5"]


def test_models_as_variants_and_a_judge_prompt_with_its_trace(project):
    summary = _json(project, "--name", "by_model", "--trace")
    fast, shouty = summary["variants"]
    assert (fast["name"], shouty["name"]) == ("fast", "shouty")
    assert fast["metrics"]["loud"]["value"] == 0.0 and shouty["metrics"]["loud"]["value"] == 1.0
    graded = [fast["metrics"]["graded"], shouty["metrics"]["graded"]]
    assert all(g["n"] == 10 for g in graded)
    assert sum(g["value"] for g in graded) == pytest.approx(1.0)     # 20 grades alternating 0.25 and 0.75
    assert summary["judges"]["calls"] == 20
    traces = [p.read_text() for p in (project / ".fmflow" / "runs").glob("*.jsonl")]
    judge_traces = [t for t in traces if '"eval by_model"' in t]
    assert len(judge_traces) == 1 and judge_traces[0].count('"grade"') >= 20
    assert len(traces) == 21                                            # one per flow run, one for the judges


def test_failed_records_and_metrics_are_counted_not_fatal(project):
    rows = _records()
    rows[2]["question"] = 3                      # not a str: the flow refuses the input
    rows[4].pop("expected")                      # the metric cannot read record.expected
    write(project, "qa.jsonl", "".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    summary = _json(project, "--name", "quality")
    first = summary["variants"][0]
    assert first["n"] == 11 and first["errors"] == 2 and first["error_lines"] == [3, 11]
    correct = first["metrics"]["correct"]
    assert correct["n"] == 8 and correct["errors"] == 1 and correct["value"] == 0.5   # lines 1, 2, 4 and 6 of 1, 2, 4, 6, 7, 8, 9, 10


def test_usage_errors(project):
    for args, says in ((("--name", "nope"), "no eval 'nope'"), ((), "several evals"),
                       (("--name", "quality", "--concurrency", "0"), "at least 1")):
        result = _eval(project, *args)
        assert result.returncode == 2 and says in result.stderr, result.stderr
    (project / "qa.jsonl").unlink()
    result = _eval(project, "--name", "quality")
    assert result.returncode == 1 and "E002" in result.stdout


def test_an_eval_of_a_flow_imported_from_another_file(project):
    source = (project / "evals.fmflow").read_text()
    flows, _evals = source.split("eval quality", 1)
    write(project, "app.fmflow", flows)
    write(project, "quality.fmflow", 'import "./app.fmflow"\n\neval quality' + _evals.split("eval by_model")[0])
    result = fmflow_cmd(project, "eval", "quality.fmflow", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert [v["metrics"]["correct"]["value"] for v in summary["variants"]] == [0.6, 0.2]


PRICED = '''
model fast {
  provider: "replay"
  max_tokens: 10
  options: { cost: { input: 100, output: 100 }, cycle: true,
             responses: [{ text: "x", tokens_in: 10, tokens_out: 10, cost: 0.002 }] }
}

prompt answer@1 (question: str) -> str {
  model: fast
  template: """{{ question }}"""
}

prompt answer@2 (question: str) -> str {
  model: fast
  template: """A: {{ question }}"""
}

flow qa(question: str) -> str {
  return answer(question: question)
}

eval quality {
  flow: qa
  dataset: jsonl("qa.jsonl")
  variants: [answer@1, answer@2]
  metrics: { correct: output == record.expected }
}
'''


def test_a_budget_stops_the_eval_and_a_larger_one_finishes_it(tmp_path):
    write(tmp_path, "evals.fmflow", PRICED)
    write(tmp_path, "qa.jsonl", "".join(json.dumps(r) + "\n" for r in _records()))
    # A call is estimated at about (3 + 4 + 10) tokens × $100 per 1M ≈ $0.0017 and costs $0.002: after two
    # calls ($0.004 spent) the next would pass $0.005.
    stopped = _eval(tmp_path, "--json", "--budget", "0.005")
    assert stopped.returncode == 1, stopped.stderr
    assert "the budget of $0.0050 was reached" in stopped.stderr and "Traceback" not in stopped.stderr
    partial = json.loads(stopped.stdout)
    ran = [v["n"] for v in partial["variants"]]
    assert sum(ran) == 2 and all(v["errors"] == 0 for v in partial["variants"])   # not-run records are no errors
    finished = _eval(tmp_path, "--json", "--budget", "1")
    assert finished.returncode == 0, finished.stderr
    summary = json.loads(finished.stdout)
    assert [v["n"] for v in summary["variants"]] == [10, 10]
    assert [v["errors"] for v in summary["variants"]] == [0, 0]
    assert sum(v["ran"] for v in summary["variants"]) == 20 - sum(ran)                # what ran before is kept


def test_model_name_replaces_a_declared_model_for_the_whole_eval(tmp_path):
    project = make_project(tmp_path)

    def loud(*args: str) -> dict[str, tuple[float, int]]:
        summary = _json(project, "--name", "by_model", *args)
        return {v["name"]: (v["metrics"]["loud"]["value"], v["ran"]) for v in summary["variants"]}

    # `shouty` answers "NO IDEA" (loud); replaced by replay:echo it repeats the lower-case question.
    assert loud() == {"fast": (0.0, 10), "shouty": (1.0, 10)}
    assert loud("--model", "shouty=replay:echo") == {"fast": (0.0, 10), "shouty": (0.0, 10)}
    # The outputs stored under the replacement are not reported as the declared model's.
    assert loud() == {"fast": (0.0, 10), "shouty": (1.0, 10)}
    assert loud() == {"fast": (0.0, 0), "shouty": (1.0, 0)}          # and those stored without it are reused
    unknown = _eval(project, "--name", "by_model", "--model", "shoty=replay:echo")
    assert unknown.returncode == 2 and "declares no model 'shoty'; did you mean 'shouty'?" in unknown.stderr
