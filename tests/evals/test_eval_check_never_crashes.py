"""The eval checks never raise, whatever an eval block holds (FMFLOW_STRICT turns a crash into a failure)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmflow.api import check_text
from fmflow.diagnostics import CODES

HEAD = '''
type Row { question: str, expected: str }
model fast { provider: "replay", options: { echo: true } }
prompt answer@1 (question: str) -> str {
  model: fast
  template: """{{ question }}"""
}
prompt answer@2 (question: str) -> str {
  model: fast
  template: """A: {{ question }}"""
}
prompt judge (reply: str) -> float {
  model: fast
  template: """{{ reply }}"""
}
flow qa(question: str) -> str {
  return answer(question: question)
}
'''

VALUES = {
    "flow": ["qa", "answer", "fast", "nope", '"qa"', "qa@1", "[qa]", "1"],
    "dataset": ['jsonl("d.jsonl")', 'jsonl("d.jsonl", type: Row)', 'jsonl("d.jsonl", type: fast)',
                'csv("d.jsonl")', 'parquet("x.pq", type: Row)', 'jsonl()', 'jsonl("a", "b")', 'jsonl(x)',
                'jsonl("d.jsonl", type: 3)', 'jsonl("d.jsonl", kind: Row)', '"d.jsonl"', "record", 'jsonl("../d.jsonl")',
                'jsonl("")', 'jsonl("/")'],
    "variants": ["[answer@1, answer@2]", "[answer@3]", "[judge@1]", "[qa]", "[]", "answer@1", "[1, answer]",
                 "[answer@1, answer@1]", "[x.y]"],
    "models": ["[fast]", "[fast, fast]", "[qa]", "[]", "fast", "[nope]"],
    "metrics": ["{ ok: output == record.expected }", "{}", "{ s: similarity(output, record.expected) }",
                "{ s: similarity(output) }", "{ s: similarity(a: output, b: output) }", "{ j: judge(reply: output) }",
                "{ j: judge(output, output) }", "{ e: exact(1, 2) }", "{ c: contains(output, record.nope) }",
                "{ v: json_valid(record) }", "{ x: record }", "{ x: output.nope }", "{ x: [m for m in record] }",
                "{ x: len(record) > 0 if output else false }", "[1]", "output", "{ similarity: similarity }",
                "{ r: record.question | similarity }", "{ n: -len(output) }"],
    "seed": ["1"],
}


@st.composite
def evals(draw) -> str:
    keys = draw(st.lists(st.sampled_from(sorted(VALUES)), max_size=6))
    entries = "\n".join(f"  {key}: {draw(st.sampled_from(VALUES[key]))}" for key in keys)
    return f"eval e {{\n{entries}\n}}\n"


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(block=evals())
def test_eval_checks_never_raise(tmp_path, monkeypatch, block):
    monkeypatch.setenv("FMFLOW_STRICT", "1")
    (tmp_path / "d.jsonl").write_text(json.dumps({"question": "q", "expected": "e"}) + "\n")
    for diagnostic in check_text(HEAD + block, str(tmp_path / "e.fmflow")):
        assert diagnostic.code in CODES and diagnostic.message
