"""Loops are recursion (LANGUAGE.md §4): flows that call themselves run, and stop at --max-depth."""

from __future__ import annotations

import json

import pytest

from fmflow.runtime.errors import FlowRuntimeError
from flowfiles import load

SCRIPTED = 'env("FMFLOW_TEST_PROVIDER", "scripted")'

REFINE = f'''
    model m {{ provider: {SCRIPTED} }}
    type Review {{
      good: bool
      notes: str
    }}
    prompt critique(text: str) -> Review {{
      model: m
      template: "Review: {{{{ text }}}}"
    }}
    prompt revise(text: str, notes: str) -> str {{
      model: m
      template: "Revise {{{{ text }}}} given {{{{ notes }}}}"
    }}
    flow refine(text: str, round: int) -> str {{
      review = critique(text)
      if review.good or round >= 3 {{
        return text
      }}
      return refine(revise(text, review.notes), round + 1)
    }}
'''

ENDLESS = '''
    flow refine(n: int) -> int {
      if n < 0 {
        return n
      }
      return critique(n + 1)
    }
    flow critique(n: int) -> int {
      return refine(n)
    }
'''


def test_a_flow_that_calls_itself_runs_until_its_way_out(tmp_path, scripted):
    provider = scripted(['{"good": false, "notes": "longer"}', "draft two",
                         '{"good": false, "notes": "clearer"}', "draft three",
                         '{"good": true, "notes": ""}'])
    flow = load(tmp_path, REFINE)
    assert flow.run(text="draft one", round=1) == "draft three"
    assert len(provider.requests) == 5
    spans = [json.loads(line) for line in open(flow.last_run.trace_path, encoding="utf-8")]
    flows = [s for s in spans if s.get("type") == "span" and s["kind"] == "flow"]
    assert [s["inputs"]["round"] for s in sorted(flows, key=lambda s: s["start"])] == [1, 2, 3]
    by_id = {s["id"]: s for s in spans if s.get("type") == "span"}

    def flow_parent(span):  # each level's span hangs (through its statement) from the level above
        parent = by_id.get(span["parent"])
        while parent is not None and parent["kind"] != "flow":
            parent = by_id.get(parent["parent"])
        return parent

    inner = max(flows, key=lambda s: s["inputs"]["round"])
    assert flow_parent(inner)["inputs"]["round"] == 2 and flow_parent(flow_parent(inner))["inputs"]["round"] == 1


def test_a_loop_that_never_stops_is_stopped_at_64_nested_calls_naming_the_cycle(tmp_path):
    flow = load(tmp_path, ENDLESS, "refine")
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(n=0)
    message = str(info.value)
    assert "more than 64 nested flow calls" in message
    assert "refine → critique → refine …" in message and "--max-depth" in message
    [trace] = (tmp_path / ".fmflow" / "runs").glob("*.jsonl")
    records = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    assert records[-1]["status"] == "error" and "nested flow calls" in records[-1]["error"]
    assert sum(1 for r in records if r.get("kind") == "flow") == 64


@pytest.mark.parametrize("depth, ok", [(10, True), (9, False)])
def test_max_depth_sets_the_limit(tmp_path, depth, ok):
    flow = load(tmp_path, '''
        flow count(n: int, stop: int) -> int {
          if n >= stop {
            return n
          }
          return count(n + 1, stop)
        }
    ''', max_depth=depth, trace=False)
    if ok:
        assert flow.run(n=1, stop=10) == 10  # ten levels: count(1) … count(10)
    else:
        with pytest.raises(FlowRuntimeError, match="more than 9 nested flow calls: the loop count → count …"):
            flow.run(n=1, stop=10)


def test_a_deep_loop_runs_when_allowed(tmp_path):
    flow = load(tmp_path, '''
        flow count(n: int, stop: int) -> int {
          if n >= stop {
            return n
          }
          return count(n + 1, stop)
        }
    ''', max_depth=2000, trace=False)
    assert flow.run(n=1, stop=1500) == 1500


@pytest.mark.parametrize("depth", [0, -1, True, 2.5, "3"])
def test_max_depth_must_be_a_positive_whole_number(tmp_path, depth):
    with pytest.raises(ValueError, match="max_depth"):
        load(tmp_path, ENDLESS, "refine", max_depth=depth)


def test_concurrent_branches_of_a_recursion_each_count_their_own_depth(tmp_path):
    """A tree walk: the calls of a comprehension run side by side, each as deep as its own path."""
    flow = load(tmp_path, '''
        flow depth(levels: int) -> int {
          if levels == 0 {
            return 1
          }
          return 1 + max([depth(levels - 1) for i in range(3)])
        }
    ''', max_depth=6, trace=False)
    assert flow.run(levels=5) == 6  # 3^5 calls, never more than 6 deep
    with pytest.raises(FlowRuntimeError, match="more than 6 nested"):
        flow.run(levels=6)


def test_the_cli_stops_a_loop_and_trace_show_draws_each_level(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from flowfiles import write

    root = Path(__file__).resolve().parents[2]
    path = write(tmp_path, ENDLESS)
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "fmflow", "run", str(path), "--flow", "refine", "-i", "n=0",
                          "--max-depth", "6"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr
    assert "more than 6 nested flow calls: the loop refine → critique → refine … did not stop" in run.stderr
    assert "Traceback" not in run.stderr
    shown = subprocess.run([sys.executable, "-m", "fmflow", "trace", "show"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    levels = [line for line in shown.stdout.splitlines() if "─ flow refine" in line or "─ flow critique" in line]
    assert len(levels) == 6
    indents = [len(line) - len(line.lstrip(" │├└─")) for line in levels]
    assert indents == sorted(indents) and len(set(indents)) == 6  # each level nested in the one above
    bad = subprocess.run([sys.executable, "-m", "fmflow", "run", str(path), "--flow", "refine", "-i", "n=0",
                          "--max-depth", "0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--max-depth must be at least 1, got 0" in bad.stderr
