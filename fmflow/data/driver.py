"""The driver of a data job: feeds records to an engine, writes outcomes, commits checkpoints.

The driver is the only writer of the output and of the checkpoint, whatever
the engine: the local engine runs records in this process's event loop, the
Dask engine on a cluster, and both hand every outcome back here through
``emit``. One job is:

    source ──records──▶ Feed ──▶ engine (the job's per-record function) ──outcomes──▶ emit
        emit ──▶ (reorder when ordered) ──▶ sink.write ──▶ finished lines ──▶ checkpoint commits

Memory stays bounded by a *window*: the feed stops reading once the records
read but not yet written span ``window`` records, however large the input
(the oldest unfinished record holds the window open; in ordered mode it also
holds back the outcomes behind it).

Commits run every ``commit_every`` seconds in a worker thread (flush, fsync,
then one SQLite transaction; see checkpoint.py), so the loop keeps running
records while the disk syncs; a final commit runs at the end, also after an
error or Ctrl-C, so a resumed job redoes as little as possible.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from ..runtime.usage import Usage
from .checkpoint import Checkpoint, Progress
from .records import Outcome, Record
from .sinks import Sink


class Runner(Protocol):
    """The per-record function of a job, opened in the process that runs records."""

    async def __call__(self, record: Record) -> Outcome: ...
    async def close(self) -> None: ...


class Job(Protocol):
    """What runs on each record: picklable, so that a Dask worker can open it too.

    ``share`` is the number of processes running records at once: each opened
    runner uses its share of the models' rate and concurrency limits.
    """

    async def open(self, share: int) -> Runner: ...


class Engine(Protocol):
    """Runs a job's records; entered (``async with``) before any output is opened, so that a
    cluster that cannot start leaves nothing behind."""

    name: str

    async def __aenter__(self) -> "Engine": ...
    async def __aexit__(self, *exc) -> None: ...
    async def run(self, job: Job, feed: "Feed", emit: Callable[[Outcome], None]) -> None: ...


@dataclass
class Totals:
    """Counts over the whole job (carried over from the runs before a resume)."""

    ok: int = 0
    failed: int = 0
    usage: Usage = field(default_factory=Usage)

    @property
    def done(self) -> int:
        return self.ok + self.failed

    def to_data(self) -> dict[str, Any]:
        u = self.usage
        return {"ok": self.ok, "failed": self.failed, "calls": u.calls, "cached": u.cached,
                "tokens_in": u.tokens_in, "tokens_out": u.tokens_out, "cost": u.cost}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "Totals":
        usage = Usage(data.get("calls", 0), data.get("cached", 0), data.get("tokens_in", 0),
                      data.get("tokens_out", 0), data.get("cost", 0.0))
        return cls(data.get("ok", 0), data.get("failed", 0), usage)


class Feed:
    """Records for the engine, in input order, held back while the window is full."""

    def __init__(self, records: Iterator[Record], driver: "Driver") -> None:
        self._records = records
        self._driver = driver
        self.exhausted = False

    async def take(self) -> Record | None:
        """The next record to run (None at the end), waiting for room in the window."""
        driver = self._driver
        while not self.exhausted:
            while driver.window_full() and not driver.stopping:
                await driver.room_freed()
            record = self._next()
            if record is not None:
                return record
        return None

    async def take_batch(self, size: int, wait: bool = True) -> list[Record]:
        """Up to ``size`` records; waits for the first one only if ``wait``, never for more."""
        batch: list[Record] = []
        if wait and size > 0:
            first = await self.take()
            if first is None:
                return batch
            batch.append(first)
        driver = self._driver
        while len(batch) < size and not self.exhausted and not driver.window_full():
            record = self._next()
            if record is not None:
                batch.append(record)
        return batch

    def _next(self) -> Record | None:
        """The next runnable record; a record the source could not read is an error outcome at once."""
        if self._driver.stopping:   # the budget is reached: the rest stays unread (see Driver.stop_lines)
            self.exhausted = True
            return None
        record = next(self._records, None)
        if record is None:
            self.exhausted = True
            return None
        self._driver.issued(record.line)
        if record.error is not None:
            self._driver.emit(Outcome(record.line, error=record.error))
            return None
        return record


class Driver:
    """Runs one job from its feed to its sink; see the module docstring."""

    def __init__(self, sink: Sink, checkpoint: Checkpoint, *, ordered: bool = False, window: int = 10_000,
                 commit_every: float = 1.0, on_progress: Callable[["Totals"], None] | None = None) -> None:
        self.sink = sink
        self.checkpoint = checkpoint
        self.ordered = ordered
        self.window = max(1, window)
        self.commit_every = commit_every
        self.on_progress = on_progress
        progress = checkpoint.progress
        self.totals = Totals.from_data(progress.totals)
        self.watermark = progress.watermark
        self._above: set[int] = set(progress.done_above)   # finished lines above the watermark
        self._issued: deque[int] = deque()                 # lines read and not yet written, in input order
        self._waiting: dict[int, Outcome] = {}             # ordered mode: outcomes held for an earlier line
        self._room = asyncio.Event()
        # Commits run in a worker thread and at the very end; the lock keeps them one
        # at a time, the sequence numbers keep an older snapshot from landing last.
        self._commit_lock = threading.Lock()
        self._snapshots = itertools.count(1)
        self._committed = 0
        self.stopping = False                              # a record was stopped by the budget
        self._stopped: dict[int, Outcome] = {}             # such records, by line
        self.unfinished = 0                                # lines written after the last commit (budget)

    # -------------------------------------------------------------- running

    async def run(self, engine: Engine, job: Job, records: Iterator[Record],
                  stop_error: str = "not run") -> Totals:
        feed = Feed(records, self)
        committer = asyncio.create_task(self._commit_periodically())
        try:
            await engine.run(job, feed, self.emit)
        finally:
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)
            if self.stopping:
                self._count_held()
            self._final_commit()
        if self.stopping:
            self._write_stopped(records, stop_error)
        return self.totals

    # ------------------------------------------------------------- the window

    def issued(self, line: int) -> None:
        self._issued.append(line)

    def window_full(self) -> bool:
        return len(self._issued) >= self.window

    async def room_freed(self) -> None:
        self._room.clear()
        await self._room.wait()

    # -------------------------------------------------------------- outcomes

    def emit(self, outcome: Outcome) -> None:
        """Take one outcome from the engine: write it now, or when its turn comes (ordered)."""
        if outcome.stopped:   # held back; written after the final commit (_write_stopped)
            self.stopping = True
            self._stopped[outcome.line] = outcome
            if outcome.usage is not None:
                self.totals.usage.add(outcome.usage)   # what it spent before it stopped counts
            self._room.set()                           # a feed waiting for room stops now
            return
        if not self.ordered:
            self._write(outcome)
            return
        self._waiting[outcome.line] = outcome
        issued, waiting = self._issued, self._waiting
        while issued and issued[0] in waiting:
            self._write(waiting.pop(issued[0]))

    def _write(self, outcome: Outcome) -> None:
        ok = self.sink.write(outcome)
        totals = self.totals
        if ok:
            totals.ok += 1
        else:
            totals.failed += 1
        if outcome.usage is not None:
            totals.usage.add(outcome.usage)
        self._finished(outcome.line)
        if self.on_progress is not None:
            self.on_progress(totals)

    def _finished(self, line: int) -> None:
        issued = self._issued
        if issued and issued[0] == line:  # the common case: the oldest record finished
            self.watermark = issued.popleft()
        else:
            self._above.add(line)
        above = self._above
        while issued and issued[0] in above:
            above.discard(issued[0])
            self.watermark = issued.popleft()
        self._room.set()

    def _count_held(self) -> None:
        """What the records held behind a stopped one spent: their calls were made, though they are
        written after the last commit and run again on resume (the commit keeps their cost;
        ``_write_stopped`` adds no usage)."""
        for outcome in self._waiting.values():
            if outcome.usage is not None:
                self.totals.usage.add(outcome.usage)

    def _write_stopped(self, records: Iterator[Record], error: str) -> None:
        """The job stopped on its budget: write the stopped records, the outcomes held behind them
        (ordered) and every record never read, as lines *after* the last commit. A resumed job cuts
        the output back to that commit and runs those records again."""
        held = {**self._waiting, **self._stopped}
        for line in sorted(held):
            outcome = held[line]
            self._write_uncommitted(outcome if not outcome.stopped else Outcome(line, error=outcome.error))
        for record in records:
            self._write_uncommitted(Outcome(record.line, error=record.error or error))
        self._waiting.clear()
        self._stopped.clear()
        self.sink.flush()

    def _write_uncommitted(self, outcome: Outcome) -> None:
        if self.sink.write(outcome):
            self.totals.ok += 1
        else:
            self.totals.failed += 1
        self.unfinished += 1

    # ------------------------------------------------------------ checkpoints

    def _snapshot(self) -> tuple[int, Progress]:
        watermark = self.watermark
        self._above = {line for line in self._above if line > watermark}
        progress = Progress(watermark, sorted(self._above), self.sink.position(), self.totals.to_data())
        return next(self._snapshots), progress

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.commit_every)
            self.sink.flush()
            await asyncio.to_thread(self._durable_commit, *self._snapshot())

    def _durable_commit(self, number: int, progress: Progress) -> None:
        with self._commit_lock:
            if number <= self._committed:
                return
            self.sink.sync()
            self.checkpoint.commit(progress)
            self._committed = number

    def _final_commit(self) -> None:
        # Synchronous: it also runs while the loop is being torn down (Ctrl-C). A
        # sink that cannot flush raises here and nothing is committed: the last
        # good commit stands.
        self.sink.flush()
        self._durable_commit(*self._snapshot())
