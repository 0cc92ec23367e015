"""Per-model limits: the `rate:` and `concurrency:` keys of a model.

A model's limits describe the *endpoint* (a provider's quota, a local
server's capacity), so every call on that model shares them: all steps of
a run, and all runs that run concurrently in one process. ``limiter_for``
hands out one ModelLimiter per model declaration per event loop.

Why our own sliding window rather than asyncio-throttle's Throttler: the
Throttler reads ``time.monotonic`` and ``asyncio.sleep`` as module globals,
so a fake clock means patching them process-wide; it polls every 10 ms
while waiting (50 queued calls on `rate: 60/min` wake 5,000 times a second)
and lets waiters race, so one call can starve. The window below takes the
clock and sleep as arguments, sleeps exactly until the oldest stamp leaves
the window, and serves waiters first come, first served.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from dataclasses import replace
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

from fmflow.providers.base import ModelConfig

__all__ = ["ModelLimiter", "RateWindow", "limiter_for", "share_limits"]


class RateWindow:
    """At most ``limit`` acquisitions in any ``period`` seconds (a sliding window)."""

    def __init__(self, limit: int, period: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        if limit < 1 or period <= 0:
            raise ValueError(f"rate must be at least 1 request per positive period, got {limit}/{period}s")
        self.limit = limit
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._stamps: deque[float] = deque()
        # Held while waiting for room: asyncio.Lock queues waiters FIFO, so the
        # earliest caller gets the next free place and nobody starves.
        self._lock = asyncio.Lock()
        # The latest sleeps taken, for tests and traces (bounded: a server runs for days).
        self.waits: deque[float] = deque(maxlen=1000)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                # A stamp exactly `period` old no longer counts: N per period, not N-1.
                while self._stamps and self._stamps[0] <= now - self.period:
                    self._stamps.popleft()
                if len(self._stamps) < self.limit:
                    self._stamps.append(now)
                    return
                wait = self._stamps[0] + self.period - now
                self.waits.append(wait)
                await self._sleep(wait)


class ModelLimiter:
    """Concurrency and rate limits of one model, shared by all its calls."""

    def __init__(self, concurrency: int | None = None, rate: tuple[int, float] | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self.rate = rate
        self._semaphore = asyncio.Semaphore(concurrency) if concurrency is not None else None
        self.window = RateWindow(rate[0], rate[1], clock=clock, sleep=sleep) if rate is not None else None
        self.in_flight = 0
        self.max_in_flight = 0
        self.started = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a free slot and a place in the rate window; hold the slot inside.

        The concurrency slot is taken first and the rate stamp last, just
        before the call is sent: a stamp taken while still queued for a slot
        would be spent long before the request, and the requests would then
        leave in a burst above the rate once slots free up.
        """
        if self._semaphore is not None:
            await self._semaphore.acquire()
        try:
            if self.window is not None:
                await self.window.acquire()
            self.in_flight += 1
            self.started += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1
        finally:
            if self._semaphore is not None:
                self._semaphore.release()


# asyncio primitives bind to the loop that first uses them, so limiters are
# kept per loop; the weak key lets a closed loop's limiters go with it.
_LIMITERS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, ModelLimiter]]" = \
    weakref.WeakKeyDictionary()


def limiter_for(config: ModelConfig) -> ModelLimiter:
    """The shared limiter of ``config``'s model declaration on the running loop.

    Keyed by the declaration (``config.key``) and its limit values, so a flow
    file edited and reloaded in a long-lived process gets its new limits
    instead of the stale ones. Must be called from inside a running loop.
    """
    loop = asyncio.get_running_loop()
    per_loop = _LIMITERS.get(loop)
    if per_loop is None:
        per_loop = _LIMITERS[loop] = {}
    key = (config.key, config.concurrency, config.rate)
    limiter = per_loop.get(key)
    if limiter is None:
        limiter = per_loop[key] = ModelLimiter(config.concurrency, config.rate)
    return limiter


def share_limits(config: ModelConfig, processes: int) -> ModelConfig:
    """``config`` with its share of the model's limits when ``processes`` processes call it at once.

    A cluster's workers each run their own limiters, so each gets ``rate /
    processes`` and ``concurrency / processes`` (rounded down, never below
    one call). A rate too small to split by count (2 workers on `rate:
    1/s`) is split by time instead: one call per ``processes / N`` periods.
    """
    if processes <= 1 or (config.rate is None and config.concurrency is None):
        return config
    rate = config.rate
    if rate is not None:
        count, period = rate
        rate = (count // processes, period) if count >= processes else (1, period * processes / count)
    concurrency = max(1, config.concurrency // processes) if config.concurrency is not None else None
    return replace(config, rate=rate, concurrency=concurrency)
