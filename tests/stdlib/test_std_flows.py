"""The stdlib from flows: `fmflow test` over the test flows, validators in a prompt's `check:`,
tools in an agent's rounds (a scripted model asks for them, the stdlib answers)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import fmflow

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def load(tmp_path, text: str):
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return fmflow.load(path, workdir=tmp_path)


def test_fmflow_test_runs_the_stdlib_test_flows(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-m", "fmflow", "test", str(HERE)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "20 passed, 0 failed" in result.stdout, result.stdout
    for name in ("clean_strips_markdown_and_redacts", "judge_an_answer", "compute_runs_the_calculator",
                 "best_of_returns_the_judges_pick", "extract_reasks_until_every_field_is_there",
                 "critique_then_revise"):
        assert f"PASS {name}" in result.stdout


def test_validators_in_a_check_list_send_a_bad_reply_back(tmp_path, scripted):
    provider = scripted(["Write to jane@example.com, see [d1].", "Retries back off exponentially [d1]."])
    flow = load(tmp_path, '''
        import "std/validators"
        model m { provider: env("FMFLOW_TEST_PROVIDER", "scripted") }
        prompt answer(question: str, docs: list[Doc]) -> str {
          model: m
          template: "{{ question }}"
          check: [no_pii(output), cites_only(output, docs), len(citations(output)) > 0, max_words(output, 20)]
          on_fail: reask(1)
        }
        flow f(question: str, docs: list[Doc]) -> str {
          return answer(question, docs)
        }
    ''')
    docs = [{"id": "d1", "text": "Use retry: 3.", "score": 0.9, "metadata": {}}]
    assert flow.run(question="How do retries work?", docs=docs) == "Retries back off exponentially [d1]."
    reask = provider.requests[1].messages[-1]["content"]
    assert "no_pii(output)" in reask


def test_an_agent_uses_the_calculator_and_reads_its_refusals(tmp_path, scripted):
    provider = scripted([
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "17 * 23"}},
                        {"name": "calculator", "arguments": {"expression": "__import__('os').getcwd()"}}]},
        "17 times 23 is 391.",
    ])
    flow = load(tmp_path, '''
        import "std/tools"
        model m { provider: env("FMFLOW_TEST_PROVIDER", "scripted") }
        agent helper(question: str) -> str {
          model: m
          tools: [calculator, now]
          template: "{{ question }}"
        }
        flow f(question: str) -> str {
          return helper(question)
        }
    ''')
    assert flow.run(question="What is 17 times 23?") == "17 times 23 is 391."
    assert sorted(t.name for t in provider.requests[0].tools) == ["calculator", "now"]
    results = [m["content"] for m in provider.requests[1].messages if m["role"] == "tool"]
    assert results[0] == "391"
    assert results[1].startswith("error: ") and "is not allowed" in results[1]


def test_filters_are_usable_as_agent_tools_and_in_comprehensions(tmp_path, scripted):
    scripted([{"tool_calls": [{"name": "redact_pii", "arguments": {"text": "call +1 (415) 555-0132"}}]}, "done"])
    flow = load(tmp_path, '''
        import "std/filters"
        model m { provider: env("FMFLOW_TEST_PROVIDER", "scripted") }
        agent cleaner(text: str) -> str {
          model: m
          tools: [redact_pii]
          template: "{{ text }}"
        }
        flow f(texts: list[str]) -> list[str] {
          cleaned = [t | redact_pii | squash_whitespace for t in texts]
          return cleaned + [cleaner("x")]
        }
    ''')
    assert flow.run(texts=["a@b.io  here", "none"]) == ["[EMAIL] here", "none", "done"]
