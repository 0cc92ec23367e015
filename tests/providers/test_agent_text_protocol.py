"""Agents on servers without native tool calls, through a loopback OpenAI-protocol server.

The server (fault_server.py) answers as scripted: a server that takes tools
answers with tool_calls; one that does not answers 400 naming tools, and the
agent goes on with its tools described in text (fmflow/runtime/tool_text.py),
for the rest of the run. Tools of every kind are used that way: fmflow tools,
LangChain tools, prompts, flows and retrievers.
"""

from __future__ import annotations

import asyncio
import json
import textwrap

import pytest

import fmflow
from fmflow.providers import close_providers, register_provider
from fmflow.providers.openai import OllamaProvider
from fmflow.runtime.errors import FlowRuntimeError

from fault_server import error, ok, tool_calls

TOOLS_PY = '''
from langchain_core.tools import tool


def word_count(text):
    return len(text.split())


@tool
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()
'''

AGENT = '''
    model m {{ provider: "ollama", name: "small-model", base_url: "{url}", retry: 0{extra} }}
    tool word_count(text: str) -> int = python("text_tools:word_count")
    agent counter(question: str) -> {returns} {{
      model: m
      system: "You count words."
      tools: [word_count]
      max_steps: 4
      template: "Answer: {{{{ question }}}}"
    }}
'''

FLOW = '''
    flow f(question: str) -> str {
      return counter(question)
    }
'''

REFUSED = error(400, "tools are not supported for this model")
CALL = ok('{"tool": "word_count", "arguments": {"text": "one two three"}}')


@pytest.fixture(autouse=True)
def _fresh():
    register_provider("ollama", OllamaProvider)  # the OpenAI protocol, no key
    yield
    register_provider("ollama", OllamaProvider)


def load(tmp_path, server, body: str, returns: str = "str", extra: str = "", flow: str | None = None):
    (tmp_path / "text_tools.py").write_text(TOOLS_PY, encoding="utf-8")
    text = AGENT.format(url=server.base_url, returns=returns, extra=extra) + body
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return fmflow.load(path, flow, workdir=tmp_path, cache=False)


def run(flow, **inputs):
    async def go():
        try:
            return await flow.arun(**inputs)
        finally:
            await close_providers()
    return asyncio.run(go())


def spans(flow, kind: str) -> list[dict]:
    with open(flow.last_run.trace_path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    return [r for r in records if r.get("type") == "span" and r.get("kind") == kind]


def test_a_server_with_native_tools_gets_them_in_the_request(tmp_path, server):
    server.script(tool_calls(("word_count", {"text": "one two three"})), ok("3 words"))
    flow = load(tmp_path, server, FLOW)
    assert run(flow, question="how many?") == "3 words"
    assert ["tools" in body for body in server.bodies] == [True, True]
    assert spans(flow, "protocol") == []
    assert server.bodies[1]["messages"][-1]["role"] == "tool"


def test_a_server_that_refuses_tools_is_asked_again_in_text(tmp_path, server):
    server.script(REFUSED, CALL, ok('{"answer": "There are 3 words."}'))
    flow = load(tmp_path, server, FLOW)
    assert run(flow, question="how many words?") == "There are 3 words."
    first, second, third = server.bodies
    assert "tools" in first and "tools" not in second and "tools" not in third
    system = second["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("You count words.")
    assert '"tool": "<tool name>"' in system["content"] and "- word_count: tool word_count" in system["content"]
    assert '"required": ["text"]' in system["content"]  # each tool's arguments as a JSON schema
    assistant, result = third["messages"][-2:]
    assert assistant == {"role": "assistant", "content": '{"tool": "word_count", "arguments": {"text": "one two three"}}'}
    assert result == {"role": "user", "content": "Result of word_count: 3"}
    assert all(m["role"] != "tool" for m in third["messages"])
    # every step in the trace: the refused call, the switch, both text rounds, the tool
    assert [bool(s.get("error")) for s in spans(flow, "model")] == [True, False, False]
    [switch] = spans(flow, "protocol")
    assert switch["name"] == "counter" and switch["model"] == "m" and "tools are not supported" in switch["reason"]
    assert [(s["name"], s["output"]) for s in spans(flow, "tool")] == [("word_count", 3)]


def test_the_refusal_is_remembered_for_the_rest_of_the_run(tmp_path, server):
    server.script(REFUSED, ok('{"answer": "first"}'), ok('{"answer": "second"}'))
    flow = load(tmp_path, server, '''
        flow f(question: str) -> str {
          a = counter(question)
          return counter(a)
        }
    ''')
    assert run(flow, question="q") == "second"
    assert ["tools" in body for body in server.bodies] == [True, False, False]
    server.script(REFUSED, ok('{"answer": "again"}'))  # a new run asks natively first again
    assert run(load(tmp_path, server, FLOW), question="q") == "again"
    assert ["tools" in body for body in server.bodies[3:]] == [True, False]


def test_a_model_declared_without_native_tools_never_sends_them(tmp_path, server):
    server.script(CALL, ok("There are 3 words."))  # prose after the results: the answer as written
    flow = load(tmp_path, server, FLOW, extra=", native_tools: false")
    assert run(flow, question="how many?") == "There are 3 words."
    assert ["tools" in body for body in server.bodies] == [False, False]
    assert spans(flow, "protocol") == []


def test_a_400_about_something_else_is_not_a_refusal_of_tools(tmp_path, server):
    server.script(error(400, "maximum context length exceeded"))
    flow = load(tmp_path, server, FLOW)
    with pytest.raises(FlowRuntimeError, match="maximum context length"):
        run(flow, question="q")
    assert len(server.bodies) == 1


def test_tool_calls_are_read_from_fences_prose_and_function_calling_shapes(tmp_path, server):
    server.script(ok('Let me count.\n```json\n{"name": "word_count", "arguments": "{\\"text\\": \\"a b\\"}"}\n```'),
                  ok('[{"tool": "word_count", "arguments": {"text": "a"}}, '
                     '{"tool": "word_count", "arguments": {"text": "a b c d"}}]'),
                  ok('{"answer": {"counts": [2, 1, 4]}}'))
    flow = load(tmp_path, server, FLOW, extra=", native_tools: false")
    assert json.loads(run(flow, question="q")) == {"counts": [2, 1, 4]}  # a str agent: the answer's JSON
    last = server.bodies[-1]["messages"][-1]
    assert last == {"role": "user", "content": "Result of word_count: 1\n\nResult of word_count: 4"}


def test_a_broken_tool_call_is_sent_back_once_then_read(tmp_path, server):
    server.script(ok('{"tool": "word_count", "arguments": {"text": "a b"'), CALL, ok('{"answer": "3"}'))
    flow = load(tmp_path, server, FLOW, extra=", native_tools: false")
    assert run(flow, question="q") == "3"
    correction = server.bodies[1]["messages"][-1]
    assert correction["role"] == "user" and "could not be read as a tool call: it is not valid JSON" in \
        correction["content"]


@pytest.mark.parametrize("reply, reason", [
    ('{"tool": "word_count", "arguments": [1, 2', "it is not valid JSON"),
    ('{"tool": 7, "arguments": {}}', 'tool call 1 has no tool name'),
    ('{"tool": "word_count", "arguments": "not json"}', "a string that is not JSON"),
    ('{"tool_calls": "word_count"}', '"tool_calls" must be a list'),
])
def test_garbage_tool_calls_end_in_a_clear_error(tmp_path, server, reply, reason):
    server.default = ok(reply)
    flow = load(tmp_path, server, FLOW, extra=", native_tools: false")
    with pytest.raises(FlowRuntimeError) as caught:
        run(flow, question="q")
    message = str(caught.value)
    assert "agent 'counter': the model did not follow the text protocol for tools" in message
    assert reason in message and "Traceback" not in message
    assert len(server.bodies) == 3  # asked, then sent back twice


def test_a_typed_agent_given_prose_rejects_it_through_on_fail(tmp_path, server):
    server.script(REFUSED, ok("I think it is three, more or less."))
    flow = load(tmp_path, server, '''
        type Count { words: int }
        flow f(question: str) -> int {
          return counter(question).words
        }
    ''', returns="Count")
    with pytest.raises(FlowRuntimeError, match="the model's answer was rejected"):
        run(flow, question="q")
    server.script(REFUSED, ok('{"answer": {"words": 3}}'))
    assert run(flow, question="q") == 3
    # natively the output schema goes as response_format; in text it would forbid tool calls
    assert ["response_format" in body for body in server.bodies[2:]] == [True, False]
    assert '"words"' in server.bodies[-1]["messages"][1]["content"]  # the output instructions stay


def test_text_rounds_are_never_streamed_as_the_answer(tmp_path, server):
    from fmflow.runtime import RunOptions, run_flow

    server.script(CALL, ok('{"answer": "3"}'))
    flow = load(tmp_path, server, FLOW, extra=", native_tools: false")
    pieces: list[str] = []
    options = RunOptions(cache=False, trace=False, workdir=str(tmp_path), on_text=pieces.append)

    async def go():
        try:
            return await run_flow(flow.program, "f", {"question": "q"}, options)
        finally:
            await close_providers()
    assert asyncio.run(go()).value == "3"
    assert "".join(pieces) == "" and all("stream" not in body for body in server.bodies)


def test_an_unknown_tool_is_told_to_the_model(tmp_path, server):
    server.script(ok('{"tool": "spell_check", "arguments": {}}'), ok('{"answer": "done"}'))
    flow = load(tmp_path, server, FLOW, extra=", native_tools: false")
    assert run(flow, question="q") == "done"
    told = server.bodies[1]["messages"][-1]["content"]
    assert told == "Result of spell_check: error: there is no tool 'spell_check'; tools: word_count"


def test_langchain_tools_prompts_flows_and_retrievers_as_text_tools(tmp_path, server):
    from fmflow.retrieval.indexing import index_paths

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "retry.md").write_text("Use on_fail: reask(2) to ask the model again.", encoding="utf-8")
    index_paths([str(docs)], "docs", store=str(tmp_path / "store"))
    server.script(REFUSED,
                  ok('[{"tool": "shout", "arguments": {"text": "hi"}}, {"tool": "double", "arguments": {"n": 4}}]'),
                  ok('{"tool": "kb", "arguments": {"query": "how to ask again"}}'),
                  ok('{"tool": "title", "arguments": {"text": "retries"}}'),
                  ok("Retries"),          # the prompt `title`, answered by the same server
                  ok('{"answer": "done"}'))
    flow = load(tmp_path, server, f'''
        tool shout(text: str) -> str = python("text_tools:shout")
        retriever kb {{ collection: "docs", store: "{tmp_path / 'store'}", k: 1 }}
        prompt title(text: str) -> str {{
          model: m
          template: "A title for {{{{ text }}}}"
        }}
        flow double(n: int) -> int {{
          return n * 2
        }}
        agent helper(question: str) -> str {{
          model: m
          tools: [shout, kb, title, double]
          max_steps: 5
          template: "{{{{ question }}}}"
        }}
        flow f(question: str) -> str {{
          return helper(question)
        }}
    ''', flow="f")
    assert run(flow, question="q") == "done"
    results = [b["messages"][-1]["content"] for b in server.bodies[2:4]] + [server.bodies[5]["messages"][-1]["content"]]
    assert results[0] == 'Result of shout: "HI"\n\nResult of double: 8'
    assert results[1].startswith("Result of kb: [") and "reask(2)" in results[1]
    assert results[2] == 'Result of title: "Retries"'
    assert "tools" not in server.bodies[4]  # the prompt's own call is a plain one
    used = {s["name"] for s in spans(flow, "tool")} | {s["name"] for s in spans(flow, "retriever")} | \
        {s["name"] for s in spans(flow, "prompt")} | {s["name"] for s in spans(flow, "flow")}
    assert {"shout", "kb", "title", "double"} <= used


def test_native_tools_must_be_a_bool():
    diagnostics = fmflow.check_text('model m { provider: "ollama", name: "x", native_tools: "no" }\n')
    assert [d.code for d in diagnostics if d.is_error] == ["E201"]
    assert not [d for d in fmflow.check_text('model m { provider: "ollama", native_tools: false }\n') if d.is_error]


def test_which_models_use_the_text_protocol():
    from types import SimpleNamespace

    from fmflow.providers import ModelConfig
    from fmflow.runtime.tool_text import uses_text

    run = SimpleNamespace(text_tool_models={("f.fmflow", "refused")})
    assert uses_text(run, ModelConfig(name="m", provider="hf", model="models/tiny"))       # cannot send tools
    assert uses_text(run, ModelConfig(name="m", provider="ollama", native_tools=False))   # declared so
    assert uses_text(run, ModelConfig(name="refused", provider="ollama", source="f.fmflow"))  # refused earlier
    assert not uses_text(run, ModelConfig(name="m", provider="ollama", source="f.fmflow"))
    assert not uses_text(run, ModelConfig(name="m", provider="no-such-provider"))  # fails when asked, saying so
