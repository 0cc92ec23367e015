"""`fmflow render FILE --prompt NAME[@N] -i KEY=VALUE…` (LANGUAGE.md §7): the messages, never a model call."""

from __future__ import annotations

import asyncio
import json

import pytest

from clitools import fmflow_cmd, write
import fmflow.api
from fmflow.runtime import RunOptions
from fmflow.runtime.prompts import render
from fmflow.runtime.preview import preview_prompt
from fmflow.runtime.run import RunState
from fmflow.types import DOC

FLOW = '''model fast {
  provider: "openai"
  name: "gpt-4o-mini"
  api_key_env: "FMFLOW_TEST_NO_SUCH_KEY"
  temperature: 0.2
}

type Answer {
  text: str
  citations: list[str]
}

tool word_count(text: str) -> int = python("my_tools:word_count")

prompt answer@1(question: str, docs: list[Doc]) -> Answer {
  model: fast
  template: "old {{ question }}"
}

prompt answer@2(question: str, docs: list[Doc]) -> Answer {
  model: fast
  system: "You answer only from the passages given."
  template: """
    {% for d in docs %}[{{ d.id }}] {{ d.text }}
    {% endfor %}
    Question: {{ question }}
  """
}

prompt plain(n: int) -> str {
  model: fast
  template: "Count to {{ n }}."
}

agent researcher(question: str) -> str {
  model: fast
  tools: [word_count]
  template: "Research: {{ question }}"
}

flow f(question: str) -> str {
  return researcher(question)
}
'''

DOCS = '[{"id": "d1", "text": "Use reask.", "score": 0.9, "metadata": {}}]'


def test_render_prints_system_user_instructions_and_schema(tmp_path):
    write(tmp_path, "flow.fmflow", FLOW)
    result = fmflow_cmd(tmp_path, "render", "flow.fmflow", "--prompt", "answer", "-i", "question=How?",
                        "-i", f"docs={DOCS}")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("prompt answer@2 → model fast (openai:gpt-4o-mini)\n")
    assert "── system ─" in out and "You answer only from the passages given." in out
    user = out.split("── user ", 1)[1]
    assert "[d1] Use reask." in user and "Question: How?" in user
    assert "Reply with JSON only" in user  # the output instructions, where the model sees them
    schema = json.loads(out.split("── output schema ", 1)[1].split("\n", 1)[1])
    assert schema["required"] == ["text", "citations"]
    assert not (tmp_path / ".fmflow").exists()  # no run, no trace, no cache


def test_render_json_is_the_runtimes_own_messages(tmp_path):
    path = write(tmp_path, "flow.fmflow", FLOW)
    result = fmflow_cmd(tmp_path, "render", "flow.fmflow", "--prompt", "answer@1", "--json",
                        "--input-json", json.dumps({"question": "Why?", "docs": json.loads(DOCS)}))
    assert result.returncode == 0, result.stderr
    preview = json.loads(result.stdout)
    assert (preview["kind"], preview["name"], preview["version"]) == ("prompt", "answer", 1)
    assert preview["model"] == {"name": "fast", "provider": "openai", "model": "gpt-4o-mini",
                                "temperature": 0.2, "max_tokens": None}
    program = fmflow.api.load_checked(path)
    decl = program.lookup("answer", 1)
    state = RunState(program, RunOptions(cache=False, trace=False))
    args = {"question": "Why?", "docs": [state.validate(DOC, d, "a doc") for d in json.loads(DOCS)]}
    messages, schema = asyncio.run(render(state, decl, args, program.signature(decl)[1]))
    assert preview["messages"] == messages and preview["schema"] == schema


def test_render_an_agent_shows_its_tools(tmp_path):
    write(tmp_path, "flow.fmflow", FLOW)
    result = fmflow_cmd(tmp_path, "render", "flow.fmflow", "--prompt", "researcher", "-i", "question=q", "--json")
    assert result.returncode == 0, result.stderr
    preview = json.loads(result.stdout)
    assert preview["kind"] == "agent" and preview["schema"] is None
    assert [t["name"] for t in preview["tools"]] == ["word_count"]
    text = fmflow_cmd(tmp_path, "render", "flow.fmflow", "--prompt", "researcher", "-i", "question=q").stdout
    assert "── tools ─" in text and "word_count: " in text


@pytest.mark.parametrize("args, message", [
    (["--prompt", "anwser", "-i", "question=q"], "no prompt 'anwser' in flow.fmflow; did you mean 'answer'?"),
    (["--prompt", "answer@3", "-i", "question=q"], "prompt 'answer' has no version 3 (declared: @1, @2)"),
    (["--prompt", "f", "-i", "question=q"], "'f' is a flow; only prompts and agents send messages"),
    (["--prompt", "answer@x"], "--prompt expects NAME or NAME@N"),
    (["--prompt", "plain", "-i", "n=three"], "input 'n'"),
    (["--prompt", "plain"], "prompt 'plain' needs input 'n'"),
    (["--prompt", "plain", "-i", "n=1", "-i", "m=2"], "prompt 'plain' has no input 'm' (inputs: n)"),
])
def test_render_usage_errors(tmp_path, args, message):
    write(tmp_path, "flow.fmflow", FLOW)
    result = fmflow_cmd(tmp_path, "render", "flow.fmflow", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr and result.stdout == ""


def test_preview_in_python(tmp_path):
    path = write(tmp_path, "flow.fmflow", FLOW)
    program = fmflow.api.load_checked(path)
    preview = asyncio.run(preview_prompt(program, program.lookup("plain"), {"n": 3}))
    assert preview["messages"] == [{"role": "user", "content": "Count to 3."}] and preview["schema"] is None
