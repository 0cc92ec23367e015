"""Cancelling a run, and failures that cancel sibling calls: no task is ever left behind."""

from __future__ import annotations

import asyncio
import json
import textwrap

import pytest

import fmflow
from fmflow.providers import register_provider
from fmflow.providers.replay import ScriptedProvider
from fmflow.runtime.errors import FlowRuntimeError

SCRIPTED = 'env("FMFLOW_TEST_PROVIDER", "scripted")'
WAIT = 3.0

FLOWS = f'''
    model m {{ provider: {SCRIPTED} }}
    prompt a(x: str) -> str {{
      model: m
      template: "a {{{{ x }}}}"
    }}
    prompt b(x: str) -> str {{
      model: m
      template: "b {{{{ x }}}}"
    }}
    flow one(x: str) -> str {{
      r = a(x)
      return r
    }}
    flow two(x: str) -> str {{
      ra = a(x)
      rb = b(x)
      return ra + rb
    }}
    flow many(items: list[str]) -> list[str] {{
      return [b(i) for i in items]
    }}
    flow nested(x: str) -> str {{
      inner = two(x)
      return inner
    }}
'''


def load(tmp_path, flow: str, **kwargs):
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(FLOWS), encoding="utf-8")
    kwargs.setdefault("workdir", tmp_path)
    return fmflow.load(path, flow, **kwargs)


def other_tasks() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


class Recorder:
    """A ScriptedProvider whose calls block until released; records starts and cancellations."""

    def __init__(self, fail: str | None = None) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.fail = fail          # prompt text whose call fails once another call has started
        self.first = asyncio.Event()
        self.second = asyncio.Event()
        self.provider = ScriptedProvider(self.answer, on_call=self.on_call)
        register_provider("scripted", lambda: self.provider)

    async def on_call(self, config, request):
        text = request.messages[-1]["content"]
        self.started.append(text)
        (self.second if self.first.is_set() else self.first).set()
        try:
            if text == self.fail:
                await asyncio.wait_for(self.second.wait(), WAIT)  # fail only once the other runs
                return
            await asyncio.sleep(3600)  # never answers on its own
        except asyncio.CancelledError:
            self.cancelled.append(text)
            raise

    def answer(self, config, request):
        return {"error": {"status": 400, "message": "bad request for " + request.messages[-1]["content"]}}


def test_cancelling_a_running_arun_leaves_no_task(tmp_path):
    recorder = Recorder()
    flow = load(tmp_path, "one")

    async def main():
        before = other_tasks()
        task = asyncio.create_task(flow.arun(x="q"))
        await asyncio.wait_for(recorder.first.wait(), WAIT)  # the prompt is in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return other_tasks() - before

    assert asyncio.run(main()) == set()
    assert recorder.cancelled == ["a q"]


def test_cancelling_a_run_with_two_calls_in_flight_cancels_both(tmp_path):
    recorder = Recorder()
    flow = load(tmp_path, "two")

    async def main():
        task = asyncio.create_task(flow.arun(x="q"))
        await asyncio.wait_for(recorder.second.wait(), WAIT)  # both prompts are in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return other_tasks()

    assert asyncio.run(main()) == set()
    assert sorted(recorder.cancelled) == ["a q", "b q"]


def test_cancelling_a_comprehension_and_a_nested_flow(tmp_path):
    recorder = Recorder()
    flow = load(tmp_path, "nested")
    many = load(tmp_path, "many")

    async def main():
        task = asyncio.create_task(flow.arun(x="q"))
        other = asyncio.create_task(many.arun(items=["1", "2", "3"]))
        await asyncio.wait_for(recorder.second.wait(), WAIT)
        while len(recorder.started) < 5:
            await asyncio.sleep(0)
        task.cancel()
        other.cancel()
        for t in (task, other):
            with pytest.raises(asyncio.CancelledError):
                await t
        return other_tasks()

    assert asyncio.run(main()) == set()
    assert sorted(recorder.cancelled) == ["a q", "b 1", "b 2", "b 3", "b q"]


def test_a_cancelled_run_ends_its_trace(tmp_path):
    recorder = Recorder()
    flow = load(tmp_path, "one")

    async def main():
        task = asyncio.create_task(flow.arun(x="q"))
        await asyncio.wait_for(recorder.first.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    [trace] = list((tmp_path / ".fmflow" / "runs").glob("*.jsonl"))
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert records[-1]["type"] == "end" and records[-1]["status"] == "cancelled"


def test_a_failure_cancels_the_other_call_and_leaves_no_task(tmp_path):
    recorder = Recorder(fail="a q")
    flow = load(tmp_path, "two")

    async def main():
        with pytest.raises(FlowRuntimeError) as info:
            await flow.arun(x="q")
        return info.value, other_tasks()

    error, left = asyncio.run(main())
    assert left == set()
    assert sorted(recorder.started) == ["a q", "b q"]
    assert recorder.cancelled == ["b q"]  # the sibling saw CancelledError
    assert "bad request for a q" in str(error)
    assert error.flow == "two"


def test_a_failure_in_a_comprehension_cancels_the_other_items(tmp_path):
    recorder = Recorder(fail="b 2")
    flow = load(tmp_path, "many")

    async def main():
        with pytest.raises(FlowRuntimeError):
            await flow.arun(items=["1", "2", "3"])
        return other_tasks()

    assert asyncio.run(main()) == set()
    assert sorted(recorder.cancelled) == ["b 1", "b 3"]


def test_a_failure_inside_a_nested_flow_cancels_the_caller_siblings(tmp_path):
    recorder = Recorder(fail="b q")
    flow = load(tmp_path, "nested")

    async def main():
        with pytest.raises(FlowRuntimeError) as info:
            await flow.arun(x="q")
        return info.value, other_tasks()

    error, left = asyncio.run(main())
    assert left == set()
    assert recorder.cancelled == ["a q"]
    assert error.flow == "two"  # the innermost flow and line are reported
