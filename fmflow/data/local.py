"""The local engine: every record in this process's event loop.

All records run in one loop, so the runtime's per-model limiters (one per
model declaration and loop, see runtime/limits.py) are shared by all of them:
a model's `concurrency` and `rate` hold for the whole job. The job's own
concurrency is a fixed number of worker coroutines, each taking the next
record from the feed when it finishes one (no task per record).
"""

from __future__ import annotations

import asyncio
from typing import Callable

from .driver import Feed, Job
from .records import Outcome


class LocalEngine:
    name = "local"

    def __init__(self, concurrency: int = 16) -> None:
        self.concurrency = max(1, concurrency)

    async def __aenter__(self) -> "LocalEngine":
        return self

    async def __aexit__(self, *exc) -> None:
        pass

    async def run(self, job: Job, feed: Feed, emit: Callable[[Outcome], None]) -> None:
        runner = await job.open(share=1)
        try:
            await run_records(runner, feed.take, emit, self.concurrency)
        finally:
            await runner.close()


async def run_records(runner, take, emit: Callable[[Outcome], None], concurrency: int) -> None:
    """Run records from ``take()`` (None at the end) with ``concurrency`` at once, emitting each outcome.

    On the first error (a bug, or cancellation) the other workers are
    cancelled and awaited: nothing outlives the call.
    """
    async def work() -> None:
        while (record := await take()) is not None:
            emit(await runner(record))

    workers = [asyncio.ensure_future(work()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*workers)
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
