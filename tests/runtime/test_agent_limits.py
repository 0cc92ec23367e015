"""Agents at their step limit apply `on_fail`, and tell the model about arguments it got wrong."""

from __future__ import annotations

import pytest

from fmflow.runtime.errors import FlowRuntimeError
from flowfiles import load

SCRIPTED = 'env("FMFLOW_TEST_PROVIDER", "scripted")'
TOOLS = "def word_count(text):\n    return len(text.split())\n"
LOOP = {"tool_calls": [{"name": "word_count", "arguments": {"text": "a b"}}]}


def agent_flow(tmp_path, on_fail: str = "", steps: int = 2):
    (tmp_path / "agent_tools.py").write_text(TOOLS, encoding="utf-8")
    return load(tmp_path, f'''
        model m {{ provider: {SCRIPTED} }}
        tool word_count(text: str) -> int = python("agent_tools:word_count")
        agent looper(question: str) -> str {{
          model: m
          tools: [word_count]
          max_steps: {steps}
          template: "{{{{ question }}}}"
          {on_fail}
        }}
        flow f(question: str) -> str {{
          return looper(question)
        }}
    ''', trace=False)


def test_out_of_steps_with_a_default_gives_the_default(tmp_path, scripted):
    provider = scripted([LOOP], cycle=True)
    flow = agent_flow(tmp_path, 'on_fail: default("no answer")')
    assert flow.run(question="q") == "no answer"
    assert len(provider.requests) == 2


def test_out_of_steps_without_on_fail_says_so_and_shows_the_last_reply(tmp_path, scripted):
    scripted([LOOP, {"text": "still counting", **LOOP}])
    flow = agent_flow(tmp_path)
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(question="q")
    assert ("agent 'looper': it reached its step limit (max_steps 2) without a final answer; its last reply: "
            '"still counting" and called word_count({"text": "a b"})') in str(info.value)


def test_out_of_steps_with_reask_asks_for_an_answer_without_tools(tmp_path, scripted):
    provider = scripted([LOOP, LOOP, "two words"])
    flow = agent_flow(tmp_path, "on_fail: reask(1)")
    assert flow.run(question="q") == "two words"
    last = provider.requests[-1]
    assert last.tools is None  # the model must answer now
    assert "You have used all 2 steps" in last.messages[-1]["content"]


def test_out_of_steps_with_retry_starts_over(tmp_path, scripted):
    provider = scripted([LOOP, LOOP, "fresh answer"])
    flow = agent_flow(tmp_path, "on_fail: retry(1)")
    assert flow.run(question="q") == "fresh answer"
    assert provider.requests[-1].tools is not None
    assert [m["role"] for m in provider.requests[-1].messages] == ["user"]  # from the first message again


def test_out_of_steps_after_the_retries_fails_naming_the_limit(tmp_path, scripted):
    scripted([LOOP], cycle=True)
    flow = agent_flow(tmp_path, "on_fail: retry(1)")
    with pytest.raises(FlowRuntimeError, match="step limit \\(max_steps 2\\)"):
        flow.run(question="q")


def test_missing_and_unknown_tool_arguments_are_told_to_the_model(tmp_path, scripted):
    provider = scripted([
        {"tool_calls": [{"name": "word_count", "arguments": {}},
                        {"name": "word_count", "arguments": {"text": "a", "lang": "en", "mode": 1}},
                        {"name": "word_count", "arguments": {"text": 3}}]},
        "done",
    ])
    flow = agent_flow(tmp_path, steps=3)
    assert flow.run(question="q") == "done"
    contents = [m["content"] for m in provider.requests[1].messages if m["role"] == "tool"]
    assert contents[0] == "error: missing argument 'text' for tool 'word_count'"
    assert contents[1] == "error: unknown arguments 'lang', 'mode' for tool 'word_count' (its arguments: text)"
    assert contents[2].startswith("error: argument 'text' of tool 'word_count'")  # a wrong type, as before
