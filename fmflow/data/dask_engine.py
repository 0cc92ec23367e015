"""The Dask engine: partitions of records run on a Dask distributed cluster.

The driver (this process) reads the source, sends partitions (lists of
records) to the cluster, and gets their outcomes back; it stays the only
writer of the output and the checkpoint. On each worker process, partitions
run in one long-lived event loop (a thread of its own), so the flow is loaded
and checked once per worker and the model limiters of that loop hold across
partitions; each worker takes its share of every model's rate and
concurrency (``limit_share`` = the number of workers).

A worker that dies mid-partition loses nothing: the scheduler runs the
partition again on another worker, and only the outcomes that reach the
driver are written. A partition that keeps killing its workers (Dask's
KilledWorker) becomes error lines for its records instead of stopping the
batch.

Without a scheduler address, a LocalCluster of two single-threaded worker
processes on 127.0.0.1 runs the job (scripts that do this need an
``if __name__ == "__main__":`` guard: the workers are spawned).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import threading
from typing import Any, Callable

from .driver import Feed, Job
from .local import run_records
from .records import DataError, Outcome, Record, describe_error

LOCAL_WORKERS = 2
CONNECT_TIMEOUT = 30.0


class DaskEngine:
    name = "dask"

    def __init__(self, concurrency: int = 16, scheduler: str | None = None, partition_size: int | None = None,
                 local_workers: int = LOCAL_WORKERS) -> None:
        if importlib.util.find_spec("distributed") is None:
            raise DataError('the dask engine needs Dask: pip install "fmflow[dask]"')
        self.concurrency = concurrency
        self.scheduler = scheduler
        self.partition_size = partition_size
        self.local_workers = local_workers
        self.client = None  # while open: the distributed.Client
        self._cluster = None

    async def __aenter__(self) -> "DaskEngine":
        """Start the local cluster, or connect to the scheduler: before any output is written."""
        self._cluster = await self._local_cluster() if self.scheduler is None else None
        try:
            self.client = await self._connect(self._cluster)
        except BaseException:
            if self._cluster is not None:
                await self._cluster.close()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await self.client.close()
        finally:
            self.client = None
            if self._cluster is not None:
                await self._cluster.close()

    async def run(self, job: Job, feed: Feed, emit: Callable[[Outcome], None]) -> None:
        await self._run_partitions(self.client, job, feed, emit)

    async def _local_cluster(self):
        from distributed import LocalCluster

        # Silenced up to CRITICAL: the job's failures reach the output as error lines, while Dask's own
        # ERROR logs are noise here (a heartbeat meeting the closing scheduler prints a traceback).
        return await LocalCluster(n_workers=self.local_workers, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, asynchronous=True, silence_logs=logging.CRITICAL)

    async def _connect(self, cluster):
        from distributed import Client

        try:
            client = await Client(cluster if cluster is not None else self.scheduler, asynchronous=True,
                                  timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as error:
            raise DataError(f"cannot reach the Dask scheduler at {self.scheduler}: {error}") from None
        try:
            await client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except (TimeoutError, asyncio.TimeoutError):
            await client.close()
            raise DataError(f"the Dask scheduler at {self.scheduler} has no workers") from None
        return client

    async def _run_partitions(self, client, job: Job, feed: Feed, emit: Callable[[Outcome], None]) -> None:
        from distributed import as_completed

        nthreads = await client.nthreads()  # worker address → threads
        threads = sum(nthreads.values()) or 1
        share = max(1, len(nthreads))
        per_worker = max(1, math.ceil(self.concurrency / share))
        size = self.partition_size or min(1024, max(8, 4 * per_worker))
        running: dict[Any, list[Record]] = {}
        completed = as_completed()

        async def submit(wait: bool) -> None:
            while len(running) < 2 * threads:  # one partition running and one queued per worker thread
                batch = await feed.take_batch(size, wait=wait and not running)
                if not batch:
                    return
                future = client.submit(run_partition, job, share, per_worker, batch, pure=False)
                running[future] = batch
                completed.add(future)

        try:
            await submit(wait=True)
            async for future in completed:
                batch = running.pop(future)
                for outcome in await _outcomes(future, batch):
                    emit(outcome)
                await submit(wait=True)
        finally:
            if running:
                await client.cancel(list(running))


async def _outcomes(future, batch: list[Record]) -> list[Outcome]:
    """The partition's outcomes; error outcomes when the cluster gave up on it (its workers kept dying)."""
    from distributed import KilledWorker

    try:
        return await future
    except KilledWorker as error:
        reason = f"the Dask workers running this record died ({describe_error(error)})"
        return [Outcome(record.line, error=reason) for record in batch]


# ------------------------------------------------------------- on the workers

def run_partition(job: Job, share: int, concurrency: int, records: list[Record]) -> list[Outcome]:
    """Run one partition in this worker process's job loop (called by Dask in a worker thread)."""
    return _job_loop().run(job, share, concurrency, records)


class _JobLoop:
    """An event loop in a thread of its own, kept for the life of the worker process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._runners: dict[Any, Any] = {}
        thread = threading.Thread(target=self.loop.run_forever, name="fmflow-jobs", daemon=True)
        thread.start()

    def run(self, job: Job, share: int, concurrency: int, records: list[Record]) -> list[Outcome]:
        return asyncio.run_coroutine_threadsafe(self._run(job, share, concurrency, records), self.loop).result()

    async def _run(self, job: Job, share: int, concurrency: int, records: list[Record]) -> list[Outcome]:
        key = (job, share)
        runner = self._runners.get(key)
        if runner is None:  # loaded and checked once per worker; jobs are few, and small
            runner = self._runners[key] = await job.open(share)
        outcomes: dict[int, Outcome] = {}
        queue = iter(records)

        async def take() -> Record | None:
            return next(queue, None)

        await run_records(runner, take, lambda outcome: outcomes.__setitem__(outcome.line, outcome),
                          min(concurrency, len(records)))
        return [outcomes[record.line] for record in records]


_LOOP: _JobLoop | None = None
_LOOP_LOCK = threading.Lock()


def _job_loop() -> _JobLoop:
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            _LOOP = _JobLoop()
        return _LOOP
