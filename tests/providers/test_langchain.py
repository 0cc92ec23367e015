"""provider "langchain", Flow.as_runnable() in LCEL chains, and LangChain tools as fmflow tools."""

from __future__ import annotations

import asyncio
import json
import textwrap

import pytest

pytest.importorskip("langchain_core")

from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage  # noqa: E402
from langchain_core.runnables import Runnable, RunnableLambda  # noqa: E402

import fmflow  # noqa: E402
from fmflow.providers import ChatRequest, ModelConfig, ProviderError, ToolSpec, ToolsUnsupported, get_provider  # noqa: E402
from fmflow.providers.langchain import provider_error, register_chat_model, unregister_chat_model  # noqa: E402
from fmflow.runtime.errors import FlowRuntimeError  # noqa: E402

# Fake chat models, written beside the flow as `lc_models.py`.
LC_MODELS = '''
import json
import re
import threading
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

SEEN = []        # the messages of every call, in order
BOUND = []       # the tools given to bind_tools
MADE = []        # one entry per factory call


def make():
    MADE.append(1)
    return GenericFakeChatModel(messages=iter(["Hello there", "second answer"]))


instance = GenericFakeChatModel(messages=iter(["from the instance"]))


class Recording(GenericFakeChatModel):
    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        SEEN.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


class ToolCalling(Recording):
    def bind_tools(self, tools, **kwargs):
        BOUND.append(tools)
        return self.bind(tools=tools)


def recording():
    return Recording(messages=iter(["plain reply"]))


def tool_calling():
    return ToolCalling(messages=iter([
        AIMessage(content="", tool_calls=[{"name": "word_count", "args": {"text": "one two three"}, "id": "c1"}]),
        "There are 3 words.",
    ]))


def no_tools():
    """No bind_tools: agents describe their tools in text and read the calls from its JSON replies."""
    return GenericFakeChatModel(messages=iter(['{"tool": "word_count", "arguments": {"text": "one two three"}}',
                                               '{"answer": "There are 3 words."}']))


class Settings(BaseChatModel):
    """Declares temperature and max_tokens, as ChatOpenAI does; reports what it was called with."""
    temperature: float | None = None
    max_tokens: int | None = None

    @property
    def _llm_type(self) -> str:
        return "settings"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        text = json.dumps({"temperature": self.temperature, "max_tokens": self.max_tokens, "kwargs": kwargs})
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


def settings():
    return Settings()


def blocks():
    return GenericFakeChatModel(messages=iter([AIMessage(
        content=[{"type": "text", "text": "two "}, {"type": "text", "text": "parts"}],
        usage_metadata={"input_tokens": 11, "output_tokens": 2, "total_tokens": 13},
        response_metadata={"model_name": "fake-1"})]))


class Echo(BaseChatModel):
    """Answers {"text": <the question upper-cased>, "n": len} for `Q: <question>` in the last message."""
    barrier: Any = None

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if self.barrier is not None:   # proves that calls run at the same time
            self.barrier.wait()
        question = re.search(r"Q: (.*)", messages[-1].content).group(1).strip()
        text = json.dumps({"text": question.upper(), "n": len(question)})
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


def echo():
    return Echo()


class Flaky(BaseChatModel):
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "flaky"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise TimeoutError("the endpoint timed out")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="after a retry"))])


flaky_model = Flaky()


def broken():
    raise ValueError("no API key configured")
'''

LC_TOOLS = '''
from langchain_core.tools import ToolException, tool


@tool
def search_tool(query: str) -> str:
    """Search the web."""
    return f"results for {query}"


@tool
async def async_count(text: str, extra: int = 0) -> int:
    """Count words."""
    return len(text.split()) + extra


@tool
def failing(query: str) -> str:
    """Always fails."""
    raise ToolException("the search backend is down")


@tool
def word_count(text: str) -> int:
    """Count words."""
    return len(text.split())
'''


@pytest.fixture(autouse=True)
def _clean_registry():
    yield
    for name in ("fake-list", "fake-stream", "echo-barrier", "fake-conv"):
        unregister_chat_model(name)


def make_flow(tmp_path, text: str, flow: str | None = None):
    (tmp_path / "lc_models.py").write_text(LC_MODELS, encoding="utf-8")
    (tmp_path / "lc_tools.py").write_text(LC_TOOLS, encoding="utf-8")
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return fmflow.load(path, flow, workdir=tmp_path)


def user_module(flow, name: str = "lc_models"):
    """The user's module as the runtime loaded it (from the flow's folder, under a private name)."""
    from fmflow.runtime.pyimport import _import

    return _import(name, str(flow.program.folder_of(flow.decl)))


def trace_spans(flow, kind: str) -> list[dict]:
    with open(flow.last_run.trace_path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    return [r for r in records if r.get("type") == "span" and r.get("kind") == kind]


def prompt_flow(name: str, extra: str = "") -> str:
    return f'''
        model lc {{
          provider: "langchain"
          name: "{name}"
          {extra}
        }}
        prompt hello(q: str) -> str {{
          model: lc
          system: "Be brief."
          template: "Say hello to {{{{ q }}}}"
        }}
        flow f(q: str) -> str {{
          return hello(q)
        }}
    '''


# ------------------------------------------------------------ the provider

def test_factory_beside_the_flow_makes_the_model_once(tmp_path):
    flow = make_flow(tmp_path, prompt_flow("lc_models:make"))
    assert flow.run(q="Ann") == "Hello there"
    assert flow.run(q="Bob") == "second answer"  # the same model instance answered both runs
    assert user_module(flow).MADE == [1]


def test_an_attribute_that_is_a_chat_model_is_used_directly(tmp_path):
    flow = make_flow(tmp_path, prompt_flow("lc_models:instance"))
    assert flow.run(q="Ann") == "from the instance"


def test_a_model_registered_from_python(tmp_path):
    register_chat_model("fake-list", FakeListChatModel(responses=["registered reply"]))
    flow = make_flow(tmp_path, prompt_flow("fake-list"))
    assert flow.run(q="Ann") == "registered reply"


def test_register_rejects_what_is_not_a_model():
    with pytest.raises(TypeError, match="needs a LangChain chat model"):
        register_chat_model("fake-list", object())


def test_messages_become_langchain_messages(tmp_path):
    flow = make_flow(tmp_path, prompt_flow("lc_models:recording"))
    assert flow.run(q="Ann") == "plain reply"
    [messages] = user_module(flow).SEEN
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage]
    assert messages[0].content == "Be brief."
    assert messages[1].content == "Say hello to Ann"


def test_temperature_and_max_tokens_reach_models_that_declare_them(tmp_path):
    flow = make_flow(tmp_path, prompt_flow("lc_models:settings", 'temperature: 0.3\nmax_tokens: 42\noptions: { seed: 7 }'))
    assert json.loads(flow.run(q="Ann")) == {"temperature": 0.3, "max_tokens": 42, "kwargs": {"seed": 7}}


def test_settings_are_ignored_by_models_without_such_fields(tmp_path):
    flow = make_flow(tmp_path, prompt_flow("lc_models:make", "temperature: 0.3\nmax_tokens: 42"))
    assert flow.run(q="Ann") == "Hello there"


def test_content_blocks_usage_and_model_name(tmp_path):
    flow = make_flow(tmp_path, prompt_flow("lc_models:blocks"))
    assert flow.run(q="Ann") == "two parts"
    [span] = trace_spans(flow, "model")
    assert (span["tokens_in"], span["tokens_out"]) == (11, 2)


def test_typed_output_is_parsed_from_the_reply(tmp_path):
    flow = make_flow(tmp_path, '''
        model lc { provider: "langchain", name: "lc_models:echo" }
        type Shout { text: str, n: int }
        prompt shout(q: str) -> Shout {
          model: lc
          template: "Q: {{ q }}"
        }
        flow f(q: str) -> Shout {
          return shout(q)
        }
    ''')
    result = flow.run(q="hey")
    assert (result.text, result.n) == ("HEY", 3)


def test_agent_tool_calls_through_a_langchain_model(tmp_path):
    flow = make_flow(tmp_path, '''
        model lc { provider: "langchain", name: "lc_models:tool_calling" }
        tool word_count(text: str) -> int = python("lc_tools:word_count")
        agent counter(question: str) -> str {
          model: lc
          tools: [word_count]
          max_steps: 3
          template: "Answer: {{ question }}"
        }
        flow f(question: str) -> str {
          return counter(question)
        }
    ''')
    assert flow.run(question="how many words?") == "There are 3 words."
    models = user_module(flow)
    [tools] = {json.dumps(t) for t in models.BOUND}  # the same tools bound for both steps
    assert json.loads(tools) == [{"type": "function", "function": {
        "name": "word_count", "description": "tool word_count",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
                       "additionalProperties": False}}}]
    first, second = models.SEEN
    assert [type(m) for m in second] == [HumanMessage, AIMessage, ToolMessage]
    assert second[1].tool_calls == [{"name": "word_count", "args": {"text": "one two three"}, "id": "c1",
                                     "type": "tool_call"}]
    assert (second[2].tool_call_id, second[2].content) == ("c1", "3")
    assert [(s["name"], s["output"]) for s in trace_spans(flow, "tool")] == [("word_count", 3)]


def test_an_agent_on_a_model_without_tool_calling_goes_on_in_text(tmp_path):
    flow = make_flow(tmp_path, '''
        model lc { provider: "langchain", name: "lc_models:no_tools" }
        tool word_count(text: str) -> int = python("lc_tools:word_count")
        agent counter(question: str) -> str {
          model: lc
          tools: [word_count]
          template: "Answer: {{ question }}"
        }
        flow f(question: str) -> str {
          return counter(question)
        }
    ''')
    assert flow.run(question="how many words?") == "There are 3 words."
    [switch] = trace_spans(flow, "protocol")
    assert switch["tool_protocol"] == "text" and "has no tool calling" in switch["reason"]
    assert [(s["name"], s["output"]) for s in trace_spans(flow, "tool")] == [("word_count", 3)]
    # the refused round is asked again in text at once, then one more round: three model spans
    assert [bool(s.get("error")) for s in trace_spans(flow, "model")] == [True, False, False]


def test_a_reply_withheld_by_a_content_filter_is_a_failed_call(tmp_path):
    withheld = AIMessage(content="", response_metadata={"finish_reason": "content_filter"})
    register_chat_model("fake-list", GenericFakeChatModel(messages=iter([withheld])))
    flow = make_flow(tmp_path, prompt_flow("fake-list"))
    with pytest.raises(FlowRuntimeError, match="content filter withheld the reply"):
        flow.run(q="Ann")


def test_a_transient_model_error_is_retried(tmp_path):
    flow = make_flow(tmp_path, prompt_flow("lc_models:flaky_model", "retry: 2"))
    assert flow.run(q="Ann") == "after a retry"
    assert user_module(flow).flaky_model.calls == 2


def test_unknown_names_and_failing_factories_are_reported(tmp_path):
    flow = make_flow(tmp_path, prompt_flow("nothing-registered"))
    with pytest.raises(FlowRuntimeError, match="neither \"module:factory\" nor a registered chat model"):
        flow.run(q="Ann")
    flow = make_flow(tmp_path, prompt_flow("lc_models:broken"))
    with pytest.raises(FlowRuntimeError, match="failed: ValueError: no API key configured"):
        flow.run(q="Ann")
    flow = make_flow(tmp_path, prompt_flow("lc_models:missing"))
    with pytest.raises(FlowRuntimeError, match="has no attribute 'missing'"):
        flow.run(q="Ann")


@pytest.mark.parametrize("error, retryable", [
    (TimeoutError("slow"), True),
    (ConnectionError("reset"), True),
    (RuntimeError("something odd"), True),
    (ValueError("bad argument"), False),
    (TypeError("wrong type"), False),
    (NotImplementedError(), False),
])
def test_exception_classes_map_to_retryable_or_not(error, retryable):
    mapped = provider_error(error, ModelConfig(name="lc", provider="langchain", model="x"))
    assert mapped.retryable is retryable
    assert ("transient error" if retryable else "usage error") in str(mapped)


def test_http_statuses_decide_retries():
    class APIStatusError(Exception):
        def __init__(self, status_code):
            super().__init__(f"HTTP {status_code}")
            self.status_code = status_code

    config = ModelConfig(name="lc", provider="langchain", model="x")
    assert provider_error(APIStatusError(429), config).retryable
    assert provider_error(APIStatusError(503), config).retryable
    assert not provider_error(APIStatusError(401), config).retryable
    assert provider_error(APIStatusError(401), config).status == 401


def test_streaming_forwards_each_piece_of_text():
    register_chat_model("fake-stream", GenericFakeChatModel(messages=iter(["one two three"])))
    pieces: list[str] = []
    request = ChatRequest(messages=[{"role": "user", "content": "count"}], on_text=pieces.append)
    config = ModelConfig(name="lc", provider="langchain", model="fake-stream")
    response = asyncio.run(get_provider("langchain").complete(config, request))
    assert response.text == "one two three"
    assert "".join(pieces) == "one two three" and len(pieces) > 1


def test_a_conversation_with_tool_results_converts():
    from fmflow.providers.langchain import to_langchain_messages

    messages = to_langchain_messages([
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "t1", "name": "f", "arguments": {"a": 1}}]},
        {"role": "tool", "tool_call_id": "t1", "name": "f", "content": "42"},
    ])
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage, AIMessage, ToolMessage]
    assert messages[2].tool_calls[0]["args"] == {"a": 1}
    assert messages[3].tool_call_id == "t1"


def test_tools_given_to_a_model_without_bind_tools_fail_clearly():
    register_chat_model("fake-conv", GenericFakeChatModel(messages=iter(["x"])))
    request = ChatRequest(messages=[{"role": "user", "content": "u"}],
                          tools=[ToolSpec(name="f", description="d", parameters={"type": "object"})])
    config = ModelConfig(name="lc", provider="langchain", model="fake-conv")
    with pytest.raises(ToolsUnsupported, match="has no tool calling") as caught:
        asyncio.run(get_provider("langchain").complete(config, request))
    assert not caught.value.retryable


# ------------------------------------------------------------ Flow.as_runnable()

TYPED_FLOW = '''
    model lc { provider: "langchain", name: "%s" }
    type Shout { text: str, n: int }
    prompt shout(q: str) -> Shout {
      model: lc
      template: "Q: {{ q }}"
    }
    flow loud(q: str) -> Shout {
      return shout(q)
    }
'''


def test_as_runnable_in_an_lcel_chain(tmp_path):
    flow = make_flow(tmp_path, TYPED_FLOW % "lc_models:echo")
    runnable = flow.as_runnable()
    assert isinstance(runnable, Runnable)
    assert runnable.get_name() == "loud"
    chain = RunnableLambda(lambda x: {"q": x}) | runnable | RunnableLambda(lambda r: f"{r['text']}/{r['n']}")

    assert runnable.invoke({"q": "hi"}) == {"text": "HI", "n": 2}  # a pydantic result becomes a dict
    assert runnable.invoke("hi") == {"text": "HI", "n": 2}         # the one input as a bare value
    assert chain.invoke("abc") == "ABC/3"
    assert chain.batch(["a", "bb", "ccc"]) == ["A/1", "BB/2", "CCC/3"]
    assert asyncio.run(chain.ainvoke("abc")) == "ABC/3"
    assert asyncio.run(chain.abatch(["a", "bb"])) == ["A/1", "BB/2"]
    assert list(chain.stream("xy")) == ["XY/2"]
    assert list(runnable.stream({"q": "xy"})) == [{"text": "XY", "n": 2}]  # the final result, once

    async def astream():
        return [chunk async for chunk in chain.astream("xy")]
    assert asyncio.run(astream()) == ["XY/2"]


def test_batch_and_abatch_run_flows_at_the_same_time(tmp_path):
    import threading

    flow = make_flow(tmp_path, TYPED_FLOW % "echo-barrier")
    echo = user_module(flow).Echo
    chain = RunnableLambda(lambda x: {"q": x}) | flow.as_runnable()
    # Three calls wait for one another at the barrier: they only pass when all run at once.
    register_chat_model("echo-barrier", echo(barrier=threading.Barrier(3, timeout=10)))
    assert [r["n"] for r in chain.batch(["a", "bb", "ccc"])] == [1, 2, 3]
    register_chat_model("echo-barrier", echo(barrier=threading.Barrier(3, timeout=10)))
    assert [r["n"] for r in asyncio.run(chain.abatch(["a", "bb", "ccc"]))] == [1, 2, 3]


def test_invoke_inside_a_running_event_loop(tmp_path):
    flow = make_flow(tmp_path, TYPED_FLOW % "lc_models:echo")
    runnable = flow.as_runnable()

    async def main():
        return runnable.invoke("hi")  # Flow.run would refuse here; the runnable uses a helper thread
    assert asyncio.run(main()) == {"text": "HI", "n": 2}


def test_a_flow_with_several_inputs_takes_a_dict(tmp_path):
    flow = make_flow(tmp_path, '''
        flow join2(a: str, b: int) -> str {
          return a + str(b)
        }
    ''')
    runnable = flow.as_runnable()
    assert runnable.invoke({"a": "x", "b": 2}) == "x2"
    assert list(runnable.get_input_schema().model_fields) == ["a", "b"]
    with pytest.raises(TypeError, match="takes the inputs a, b"):
        runnable.invoke("x")


# ------------------------------------------------------------ LangChain tools as fmflow tools

def test_a_langchain_tool_is_a_fmflow_tool(tmp_path):
    flow = make_flow(tmp_path, '''
        tool search(query: str) -> str = python("lc_tools:search_tool")
        tool count(text: str, extra: int) -> int = python("lc_tools:async_count")
        flow f(q: str) -> str {
          hits = search(q)
          n = count(text: hits, extra: 1)
          return hits + " " + str(n)
        }
    ''')
    assert flow.run(q="fmflow") == "results for fmflow 4"


def test_a_failing_langchain_tool_fails_the_call(tmp_path):
    flow = make_flow(tmp_path, '''
        tool search(query: str) -> str = python("lc_tools:failing")
        flow f(q: str) -> str {
          return search(q)
        }
    ''')
    with pytest.raises(FlowRuntimeError, match="the search backend is down"):
        flow.run(q="x")


def test_plain_python_tools_still_work_beside_langchain_ones(tmp_path):
    (tmp_path / "plain.py").write_text("def shout(text):\n    return text.upper()\n", encoding="utf-8")
    flow = make_flow(tmp_path, '''
        tool shout(text: str) -> str = python("plain:shout")
        tool search(query: str) -> str = python("lc_tools:search_tool")
        flow f(q: str) -> str {
          return shout(search(q))
        }
    ''')
    assert flow.run(q="x") == "RESULTS FOR X"
