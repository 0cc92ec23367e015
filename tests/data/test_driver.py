"""The driver and the local engine with a job made here: order, the window, checkpoints, resume."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from fmflow.data.batch import BatchSink
from fmflow.data.checkpoint import Checkpoint
from fmflow.data.driver import Driver
from fmflow.data.local import LocalEngine
from fmflow.data.records import DataError, Outcome, Record
from fmflow.data.sinks import LineFile, open_lines
from fmflow.runtime.usage import Usage


class DoublingJob:
    """Doubles ``x`` after a random short wait, so that records finish out of order."""

    def __init__(self, gate: dict[int, asyncio.Event] | None = None, seed: int = 1) -> None:
        self.gate = gate or {}
        self.random = random.Random(seed)
        self.running = 0
        self.most_running = 0

    async def open(self, share: int):
        return self

    async def __call__(self, record: Record) -> Outcome:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if record.line in self.gate:
                await self.gate[record.line].wait()
            await asyncio.sleep(self.random.random() / 1000)
            if record.value["x"] < 0:
                return Outcome(record.line, error="negative", usage=Usage(calls=1))
            return Outcome(record.line, output=record.value["x"] * 2, usage=Usage(calls=1, tokens_in=2))
        finally:
            self.running -= 1

    async def close(self) -> None:
        pass


def numbered(n: int, bad: set[int] = frozenset()):
    return (Record(i, {"x": -i if i in bad else i}) for i in range(1, n + 1))


def start(tmp_path, identity=None, **kwargs):
    checkpoint = Checkpoint.create(str(tmp_path / "out.ckpt"), identity or {"job": "test"})
    return Driver(BatchSink(LineFile(str(tmp_path / "out.jsonl"))), checkpoint, **kwargs), checkpoint


def run(driver, job, records, concurrency=8):
    return asyncio.run(driver.run(LocalEngine(concurrency), job, records))


def lines(tmp_path):
    return [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("ordered", [False, True])
def test_every_record_is_written_once(tmp_path, ordered):
    driver, checkpoint = start(tmp_path, ordered=ordered)
    job = DoublingJob()
    totals = run(driver, job, numbered(500, bad={7, 300}), concurrency=16)
    checkpoint.close()
    got = lines(tmp_path)
    assert sorted(o["line"] for o in got) == list(range(1, 501))
    assert {o["line"]: o.get("output", o.get("error")) for o in got}[300] == "negative"
    assert (totals.ok, totals.failed, totals.usage.calls, totals.usage.tokens_in) == (498, 2, 500, 996)
    assert job.most_running == 16
    in_order = [o["line"] for o in got] == list(range(1, 501))
    assert in_order if ordered else not in_order


@pytest.mark.parametrize("ordered", [False, True])
def test_a_slow_record_holds_the_window(tmp_path, ordered):
    """Reading stops `window` records past the oldest unfinished one: memory stays bounded."""
    gate = {3: asyncio.Event()}
    driver, checkpoint = start(tmp_path, ordered=ordered, window=20)
    read: list[int] = []

    def source():
        for record in numbered(200):
            read.append(record.line)
            yield record

    async def scenario():
        task = asyncio.ensure_future(driver.run(LocalEngine(4), DoublingJob(gate), source()))
        for _ in range(200):
            await asyncio.sleep(0.002)
        held = (len(read), len(driver._waiting))
        gate[3].set()
        await task
        return held

    held_read, held_waiting = asyncio.run(scenario())
    checkpoint.close()
    assert held_read == 22  # lines 3..22 span the window; nothing beyond was read
    assert held_waiting == (19 if ordered else 0)  # outcomes waiting for line 3
    assert sorted(o["line"] for o in lines(tmp_path)) == list(range(1, 201))


def test_checkpoint_records_the_finished_lines_and_the_output_length(tmp_path):
    driver, checkpoint = start(tmp_path)
    for line in (1, 2, 3, 4, 5, 6):
        driver.issued(line)
    for line in (1, 2, 5, 6):
        driver.emit(Outcome(line, output=line))
    driver._final_commit()
    checkpoint.close()
    resumed = Checkpoint.load(str(tmp_path / "out.ckpt"))
    progress = resumed.progress
    assert (progress.watermark, progress.done_above) == (2, [5, 6])
    assert progress.position == {"output": (tmp_path / "out.jsonl").stat().st_size}
    assert progress.totals["ok"] == 4
    skip = progress.skipper()
    assert [n for n in range(1, 9) if not skip(n)] == [3, 4, 7, 8]
    resumed.close()


def test_resume_cuts_what_was_written_after_the_last_commit(tmp_path):
    driver, checkpoint = start(tmp_path)
    run(driver, DoublingJob(), numbered(10))
    checkpoint.close()
    committed = (tmp_path / "out.jsonl").read_bytes()
    with (tmp_path / "out.jsonl").open("ab") as f:
        # uncommitted lines, then a torn one: longer than what the resumed run writes
        f.write(b'{"line": 11, "output": 22}\n{"line": 12, "output": 24}\n{"line": 13, "outp')
    resumed = Checkpoint.load(str(tmp_path / "out.ckpt"))
    file = open_lines(str(tmp_path / "out.jsonl"), resumed.progress.position["output"])
    driver = Driver(BatchSink(file), resumed)
    totals = run(driver, DoublingJob(), (r for r in numbered(12) if not resumed.progress.skipper()(r.line)))
    file.close()
    resumed.close()
    text = (tmp_path / "out.jsonl").read_bytes()
    assert text.startswith(committed)
    assert sorted(o["line"] for o in lines(tmp_path)) == list(range(1, 13))
    assert totals.ok == 12


def test_an_output_shorter_than_its_checkpoint_is_refused(tmp_path):
    driver, checkpoint = start(tmp_path)
    run(driver, DoublingJob(), numbered(10))
    checkpoint.close()
    (tmp_path / "out.jsonl").write_text("")
    with pytest.raises(DataError, match="was changed or replaced"):
        open_lines(str(tmp_path / "out.jsonl"), Checkpoint.load(str(tmp_path / "out.ckpt")).progress.position["output"])


def test_one_checkpoint_one_writer(tmp_path):
    checkpoint = Checkpoint.create(str(tmp_path / "out.ckpt"), {"job": "test"})
    with pytest.raises(DataError, match="another fmflow job"):
        Checkpoint.load(str(tmp_path / "out.ckpt"))
    checkpoint.close()
    Checkpoint.load(str(tmp_path / "out.ckpt")).close()


def test_a_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "out.ckpt").write_text("hello")
    with pytest.raises(DataError, match="not a readable checkpoint"):
        Checkpoint.load(str(tmp_path / "out.ckpt"))


def test_an_engine_error_still_commits_what_was_written(tmp_path):
    class Failing(DoublingJob):
        async def __call__(self, record):
            if record.line == 50:
                raise RuntimeError("bug")
            return await super().__call__(record)

    driver, checkpoint = start(tmp_path)
    with pytest.raises(RuntimeError, match="bug"):
        run(driver, Failing(), numbered(100), concurrency=1)
    checkpoint.close()
    progress = Checkpoint.load(str(tmp_path / "out.ckpt")).progress
    assert progress.watermark == 49
    assert progress.position["output"] == (tmp_path / "out.jsonl").stat().st_size


def test_a_budget_stop_counts_what_the_records_held_behind_it_spent(tmp_path):
    """In order, records that finished after a record the budget stopped are written after the last
    commit (a resumed job runs them again), but their model calls were made: their cost counts."""
    gate = {1: asyncio.Event()}

    class Stopping(DoublingJob):
        async def __call__(self, record):
            if record.line == 1:
                await self.gate[1].wait()
                return Outcome(1, error="budget", usage=Usage(calls=1, cost=0.5), stopped=True)
            outcome = await super().__call__(record)
            outcome.usage.cost = 1.0
            if record.line == 3:
                self.gate[1].set()
            return outcome

    driver, checkpoint = start(tmp_path, ordered=True)
    totals = run(driver, Stopping(gate), numbered(3), concurrency=3)
    checkpoint.close()
    assert [o["line"] for o in lines(tmp_path)] == [1, 2, 3]
    assert driver.unfinished == 3
    assert totals.usage.cost == pytest.approx(2.5)          # lines 2 and 3 ran; line 1 spent 0.5 first
    committed = Checkpoint.load(str(tmp_path / "out.ckpt")).progress
    assert committed.position["output"] == 0 and committed.totals["cost"] == pytest.approx(2.5)
