"""A run hands its trace to the background writer when it ends: the file is complete whenever
someone asks for it (``trace_path``, ``flow.run()``, a failed run, exit), the queue of traces
waiting is bounded, and masked texts memoised across runs follow the secrets they were cleaned
under."""

from __future__ import annotations

import asyncio
import json
import textwrap
import threading
import time

import fmflow
from fmflow.observe import background
from fmflow.observe.background import BACKGROUND, Background
from fmflow.observe.trace import TraceWriter
from fmflow.runtime.errors import FlowRuntimeError
from fmflow.secrets import SecretMasker

FLOW = '''
tool shout(x: str) -> str = python("handoff_tools:shout")
tool boom(x: str) -> str = python("handoff_tools:boom")

flow main(x: str) -> str {
  a = shout(x: x)
  b = shout(x: a)
  return b
}

flow failing(x: str) -> str {
  return boom(x: x)
}
'''

TOOLS = '''
async def shout(x):
    return x.upper() + "!"

async def boom(x):
    raise ValueError("broken on purpose")
'''


def load(tmp_path, name: str):
    (tmp_path / "handoff_tools.py").write_text(TOOLS, encoding="utf-8")
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(FLOW), encoding="utf-8")
    return fmflow.load(path, name, workdir=tmp_path, cache=False)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_the_trace_path_of_an_async_run_leads_to_a_complete_file(tmp_path):
    flow = load(tmp_path, "main")

    async def many():
        results = []
        for i in range(20):
            await flow.arun(x=f"q{i}")
            results.append(flow.last_run)
        return results

    for result in asyncio.run(many()):
        found = lines(result.trace_path)
        assert found[0]["type"] == "run" and found[-1]["type"] == "end" and found[-1]["status"] == "ok"
        assert sum(r["type"] == "span" for r in found) == 6   # 2 assignments, 2 calls, the return, the flow


def test_flow_run_and_a_failed_run_leave_complete_files(tmp_path):
    flow = load(tmp_path, "main")
    assert flow.run(x="a") == "A!!"
    runs = tmp_path / ".fmflow" / "runs"
    assert [lines(p)[-1]["status"] for p in runs.glob("*.jsonl")] == ["ok"]   # no trace_path asked for
    failing = load(tmp_path, "failing")

    async def fail():
        try:
            await failing.arun(x="a")
        except FlowRuntimeError:
            return sorted(lines(p)[-1]["status"] for p in runs.glob("*.jsonl"))

    assert asyncio.run(fail()) == ["error", "ok"]   # written before the error reached the caller


def test_flush_all_completes_every_trace_handed_over(tmp_path):
    flow = load(tmp_path, "main")

    async def many():
        for i in range(50):
            await flow.arun(x=f"q{i}")

    asyncio.run(many())
    BACKGROUND.flush_all()
    ends = [lines(p)[-1] for p in (tmp_path / ".fmflow" / "runs").glob("*.jsonl")]
    assert len(ends) == 50 and all(e["type"] == "end" for e in ends)


class _Closed:
    closed = True

    def __init__(self) -> None:
        self.finished = 0

    def finish(self) -> None:
        self.finished += 1


def test_the_queue_of_traces_waiting_for_the_writer_is_bounded(monkeypatch):
    monkeypatch.setattr(background, "BACKLOG", 3)
    writers = Background()          # no thread started: nothing takes from the queue
    queued = [_Closed() for _ in range(4)]
    assert [writers.finish_soon(w) for w in queued] == [True, True, True, False]   # the caller writes the 4th


class _Slow(_Closed):
    def finish(self) -> None:
        time.sleep(0.005)
        super().finish()


def test_runs_that_end_faster_than_the_writer_writes_wait_for_room(monkeypatch):
    monkeypatch.setattr(background, "BACKLOG", 2)
    writers = Background()
    most = []
    slow = [_Slow() for _ in range(12)]
    writers._thread = threading.Thread(target=writers._run, daemon=True)   # as add() starts it
    writers._thread.start()
    for writer in slow:
        assert writers.finish_soon(writer)          # waits while two are queued, never refuses
        most.append(len(writers._closing))
    writers.stop()                   # writes what is queued and ends the thread
    assert max(most) <= 2 and all(w.finished >= 1 for w in slow)


def test_a_trace_whose_writer_thread_is_late_is_finished_by_whoever_needs_it(tmp_path):
    trace = TraceWriter(tmp_path)
    span = trace.start_span("tool", "t", inputs={"x": "1"})
    span.end(output="2")
    trace.close("ok", wait=False)
    trace.finish()                   # the caller's thread, at once
    assert [r["type"] for r in lines(trace.path)] == ["run", "span", "end"]
    trace.finish()                   # the writer thread coming later writes nothing twice
    assert len(lines(trace.path)) == 3


def test_a_text_memoised_before_a_secret_was_learned_is_masked_after(tmp_path):
    masker = SecretMasker()
    first = TraceWriter(tmp_path / "a", secrets=masker)
    first.start_span("tool", "t", inputs={"key": "hunter2-token"}).end(output="hunter2-token")
    first.close()                    # the text is memoised, clean, under no secret
    learned = masker.copy()
    learned.add("hunter2-token")     # an env() read by a later run
    second = TraceWriter(tmp_path / "b", secrets=learned)
    second.start_span("tool", "t", inputs={"key": "hunter2-token"}).end(output="hunter2-token")
    second.close()
    assert "hunter2-token" in first.path.read_text(encoding="utf-8")
    assert "hunter2-token" not in second.path.read_text(encoding="utf-8")
    same = TraceWriter(tmp_path / "c", secrets=masker)   # the first masker still masks nothing
    same.start_span("tool", "t").end(output="hunter2-token")
    same.close()
    assert "hunter2-token" in same.path.read_text(encoding="utf-8")
