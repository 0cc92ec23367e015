"""A small eval project for the tests: a replay model, a counting tool, ten records with known answers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.cli.clitools import fmflow_cmd, write

COUNTER = '''
import os, time

def note(q: str) -> str:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.txt"), "a") as f:
        f.write(q + "\\n")
    time.sleep(float(os.environ.get("EVAL_TEST_DELAY", "0")))
    return q
'''

FLOW = '''
model fast { provider: "replay", options: { echo: true } }
model shouty { provider: "replay", options: { responses: ["NO IDEA"], cycle: true } }
model grader { provider: "replay", options: { responses: ["0.25", "0.75"], cycle: true } }

tool note(q: str) -> str = python("counter:note")

prompt answer@1 (question: str) -> str {
  model: fast
  template: """{{ question }}"""
}

prompt answer@2 (question: str) -> str {
  model: fast
  template: """A: {{ question }}"""
}

prompt grade (question: str, reply: str) -> float {
  model: grader
  template: """How good is {{ reply }} as an answer to {{ question }}?"""
}

flow qa(question: str) -> str {
  q = note(question)
  return answer(question: q)
}

eval quality {
  flow: qa
  dataset: jsonl("qa.jsonl")
  variants: [answer@1, answer@2]
  metrics: {
    correct: output == record.expected,
    long: len(output),
  }
}

eval by_model {
  flow: qa
  dataset: jsonl("qa.jsonl")
  models: [fast, shouty]
  metrics: { loud: upper(output) == output, graded: grade(question: record.question, reply: output) }
}
'''


def records() -> list[dict]:
    rows = []
    for i in range(1, 11):
        q = f"question {i}?"
        expected = q if i <= 6 else f"A: {q}" if i <= 8 else "something else"
        rows.append({"question": q, "expected": expected, "id": i})
    return rows


def make_project(tmp_path: Path) -> Path:
    write(tmp_path, "counter.py", COUNTER)
    write(tmp_path, "evals.fmflow", FLOW)
    write(tmp_path, "qa.jsonl", "".join(json.dumps(r) + "\n" for r in records()))
    return tmp_path


def calls(project: Path) -> int:
    path = project / "calls.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def run_eval(project: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return fmflow_cmd(project, "eval", "evals.fmflow", *args, **kwargs)


def eval_json(project: Path, *args: str) -> dict:
    result = run_eval(project, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


