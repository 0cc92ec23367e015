"""Values entering a run (tool results, replies, inputs) are copied, representable and valid
text; tools are bounded in time and whatever they do becomes a located tool error."""

from __future__ import annotations

import asyncio
import json
import math
import threading

import pytest

from fmflow.providers import ChatResponse, Provider, ToolCall, register_provider
from fmflow.runtime.boundary import Unrepresentable, admit, clean_text
from fmflow.runtime.errors import FlowRuntimeError
from flowfiles import load, write

SCRIPTED = 'env("FMFLOW_TEST_PROVIDER", "scripted")'


@pytest.fixture(autouse=True)
def _tool_threads_end():
    """A timed-out tool's thread runs on (threads cannot be killed): wait for it, so no test
    leaves one behind."""
    yield
    for thread in threading.enumerate():
        if thread.name == "fmflow-tool":
            thread.join(10)
            assert not thread.is_alive()


# -------------------------------------------------------------- admit, clean_text

def test_clean_text_replaces_lone_surrogates_and_joins_split_pairs():
    assert clean_text("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert clean_text("\ud83d\ude00") == "\U0001F600"
    assert clean_text("plain é") == "plain é"


def cyclic_list():
    items = [1]
    items.append(items)
    return items


def cyclic_dict():
    d = {"a": 1}
    d["self"] = {"again": d}
    return d


@pytest.mark.parametrize("value, problem", [
    (cyclic_list(), "it contains itself (a cycle) (at [1])"),
    (cyclic_dict(), 'it contains itself (a cycle) (at ["self"]["again"])'),
    (math.nan, "it holds NaN"),
    ({"x": [1.0, math.inf]}, 'it holds Infinity, a number JSON cannot represent (at ["x"][1])'),
    (-math.inf, "-Infinity"),
    (object(), "it holds a Python 'object' object"),
    ({1: "a"}, "a dict key is of type 'int'"),
    ({"s": {1, 2}}, "it holds a Python 'set' object"),
])
def test_admit_refuses_what_no_type_can_hold(value, problem):
    with pytest.raises(Unrepresentable) as info:
        admit(value)
    assert problem in str(info.value)


def test_admit_refuses_nesting_too_deep_for_the_interpreter():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(Unrepresentable, match="nested too deeply"):
        admit(deep)


def test_admit_copies_and_cleans():
    shared = ["x"]
    value = {"a": shared, "b": ("t", "\ud800"), "n": True, "f": 1.5}
    copy = admit(value)
    assert copy == {"a": ["x"], "b": ["t", "\ufffd"], "n": True, "f": 1.5}
    assert copy["a"] is not shared
    assert admit(shared) == shared and admit(shared) is not shared


# -------------------------------------------------------------- tools

TOOLS = '''
import asyncio, sys, threading, time

KEPT = []
started = threading.Event()
release = threading.Event()

def grow(items):
    items.append("added by the tool")
    return len(items)

def keep(x):
    KEPT.append(x)
    return KEPT

def touch(a):
    a.tags.append("added by the tool")
    return a.text

def slow(x):
    time.sleep(x)
    return "late"

def exits(x):
    sys.exit(3)

def both(x):
    started.set() if x == "a" else None
    release.wait(5) if x == "a" else release.set()
    return x
'''


def tool_flow(tmp_path, body: str, **kwargs):
    write(tmp_path, TOOLS, "my_tools.py")
    return load(tmp_path, body, **kwargs)


def test_a_tool_that_mutates_its_argument_does_not_change_the_flows_value(tmp_path):
    flow = tool_flow(tmp_path, '''
        type A {
          text: str
          tags: list[str]
        }
        tool grow(items: list[str]) -> int = python("my_tools:grow")
        tool touch(a: A) -> str = python("my_tools:touch")
        flow f(tags: list[str]) -> json {
          a = A(text: "t", tags: tags)
          n = grow(tags)
          m = grow(a.tags)
          t = touch(a)
          return { tags: tags, a: a, n: n, m: m, t: t }
        }
    ''')
    result = flow.run(tags=["x"])
    assert result["tags"] == ["x"] and result["a"].tags == ["x"]
    assert result["n"] == 2 and result["m"] == 2


def test_a_tool_keeping_its_result_cannot_change_the_flows_value_later(tmp_path):
    flow = tool_flow(tmp_path, '''
        tool keep(x: str) -> json = python("my_tools:keep")
        flow f(x: str) -> json {
          first = keep(x)
          second = keep(first[0] + "!")
          return [first, second]
        }
    ''')
    assert flow.run(x="a") == [["a"], ["a", "a!"]]


def test_a_tool_timeout_through_the_api(tmp_path):
    flow = tool_flow(tmp_path, '''
        tool slow(x: float) -> str = python("my_tools:slow", timeout: 100ms)
        flow f(x: float) -> str {
          return slow(x)
        }
    ''')
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(x=2.0)   # the worker thread sleeps on; the run does not wait for it
    assert "tool 'slow' (my_tools:slow) at " in str(info.value)
    assert "flow.fmflow:2 did not finish within its timeout of 0.1s" in str(info.value)
    assert flow.run(x=0.0) == "late"


def test_sync_tools_run_at_the_same_time(tmp_path):
    flow = tool_flow(tmp_path, '''
        tool both(x: str) -> str = python("my_tools:both")
        flow f(x: str) -> list[str] {
          return [both(i) for i in ["a", "b"]]
        }
    ''')
    assert flow.run(x="") == ["a", "b"]   # "a" waits until "b" runs beside it


def test_an_agent_hears_that_its_tool_called_sys_exit(tmp_path, monkeypatch):
    flow = tool_flow(tmp_path, '''
        model m {
          provider: "replay"
          options: { responses: [{ tool_calls: [{ name: "exits", arguments: { x: "a" } }] }, "the tool broke"] }
        }
        tool exits(x: str) -> str = python("my_tools:exits")
        agent helper(q: str) -> str {
          model: m
          tools: [exits]
          template: "{{ q }}"
        }
        flow f(q: str) -> str {
          return helper(q)
        }
    ''')
    assert flow.run(q="go") == "the tool broke"
    spans = [json.loads(line) for line in open(flow.last_run.trace_path, encoding="utf-8")]
    tool_span = next(s for s in spans if s.get("kind") == "tool")
    assert "called sys.exit(3)" in tool_span["error"]


# -------------------------------------------------------------- replies and inputs

class Streamer(Provider):
    """Streams its reply in two pieces, the second a lone surrogate (as a broken provider might)."""

    async def complete(self, config, request) -> ChatResponse:
        for piece in ("plain ", "\udc80"):
            if request.on_text is not None:
                request.on_text(piece)
        return ChatResponse(text="plain \udc80")


def test_lone_surrogates_in_replies_streams_and_tool_calls_are_replaced(tmp_path, scripted):
    register_provider("streamer", Streamer)
    scripted([
        ChatResponse(text="", tool_calls=[ToolCall(id="c1", name="echo", arguments={"x": "t\ud800"})]),
        "answer \ud800 done",
    ])
    write(tmp_path, "def echo(x):\n    return x\n", "my_tools.py")
    shown: list[str] = []
    flow = load(tmp_path, f'''
        model m {{
          provider: {SCRIPTED}
          temperature: 0
        }}
        tool echo(x: str) -> str = python("my_tools:echo")
        agent a(q: str) -> str {{
          model: m
          tools: [echo]
          template: "{{{{ q }}}}"
        }}
        model streams {{
          provider: env("FMFLOW_TEST_STREAMER", "streamer")
        }}
        prompt p(q: str) -> str {{
          model: streams
          template: "{{{{ q }}}}"
        }}
        flow f(q: str) -> str {{
          first = a(q)
          return p(q + first)
        }}
    ''')
    flow.options.on_text = shown.append
    # Inputs holding a lone surrogate are refused (inputs.py); replies are repaired.
    assert flow.run(q="q") == "plain \ufffd"
    trace = open(flow.last_run.trace_path, encoding="utf-8").read()   # written, and valid UTF-8
    assert "answer \ufffd done" in trace and "t\ufffd" in trace and "qanswer \ufffd done" in trace
    assert "".join(shown) == "plain \ufffd"


def test_a_reply_with_nan_is_rejected_and_asked_again(tmp_path, scripted):
    provider = scripted(['{"score": NaN}', '{"score": 0.5}'])
    flow = load(tmp_path, f'''
        model m {{
          provider: {SCRIPTED}
        }}
        type Score {{
          score: float
        }}
        prompt rate(q: str) -> Score {{
          model: m
          template: "{{{{ q }}}}"
          on_fail: reask(1)
        }}
        flow f(q: str) -> float {{
          return rate(q).score
        }}
    ''')
    assert flow.run(q="x") == 0.5
    assert "it holds NaN" in provider.requests[1].messages[-1]["content"]


@pytest.mark.parametrize("value, problem", [
    (math.nan, "input 'x': it holds NaN"),
    (cyclic_list(), "input 'x': it contains itself"),
    ({"t": "\ud800"}, "input 'x' holds a lone surrogate"),
])
def test_inputs_that_no_type_can_hold_are_refused(tmp_path, value, problem):
    flow = load(tmp_path, '''
        flow f(x: json) -> json {
          return x
        }
    ''')
    with pytest.raises(FlowRuntimeError, match=problem):
        flow.run(x=value)


def test_builtins_that_make_nan_fail_at_the_next_boundary(tmp_path):
    flow = load(tmp_path, '''
        flow f(x: str) -> float {
          return float(x)
        }
    ''')
    with pytest.raises(FlowRuntimeError, match="the result of flow 'f': it holds NaN"):
        flow.run(x="nan")


def test_no_worker_thread_outlives_a_test_for_good(tmp_path):
    """Abandoned tool threads are daemons: they never hold the interpreter."""
    flow = tool_flow(tmp_path, '''
        tool slow(x: float) -> str = python("my_tools:slow", timeout: 50ms)
        flow f(x: float) -> str {
          return slow(x)
        }
    ''')
    with pytest.raises(FlowRuntimeError):
        flow.run(x=0.5)
    assert all(t.daemon for t in threading.enumerate() if t.name == "fmflow-tool")


def test_a_tool_cancelled_before_its_thread_starts_never_runs():
    from fmflow.runtime import tools

    ran = []

    async def main():
        workers = tools._Workers(limit=1)
        loop = asyncio.get_running_loop()
        gate = threading.Event()
        first = tools._Job(loop, loop.create_future(), __import__("contextvars").copy_context(), gate.wait, {})
        second = tools._Job(loop, loop.create_future(), __import__("contextvars").copy_context(),
                            lambda: ran.append(1), {})
        workers.submit(first)
        workers.submit(second)       # queued behind the first: one worker only
        second.abandon()
        gate.set()
        await first.future
        await asyncio.sleep(0.05)

    asyncio.run(main())
    assert ran == []


@pytest.mark.parametrize("module, problem", [
    ("import sys\nsys.exit(2)\n", "failed: SystemExit: 2"),
    ("raise KeyboardInterrupt\n", "failed: KeyboardInterrupt"),
    ("import time\ntime.sleep(2)\n", "did not finish within its timeout of 0.2s"),
])
def test_a_tool_module_that_exits_or_hangs_while_imported_fails_the_call(tmp_path, module, problem):
    write(tmp_path, module + "def f(x):\n    return x\n", "odd_tools.py")
    flow = load(tmp_path, '''
        tool f(x: str) -> str = python("odd_tools:f", timeout: 200ms)
        flow g(x: str) -> str {
          return f(x)
        }
    ''')
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(x="a")
    assert problem in str(info.value)
