"""Per-model limits: the `rate:` and `concurrency:` keys of a model.

A model's limits describe the *endpoint* (a provider's quota, a local
server's capacity), so every call on that model shares them: all steps of
a run, and all runs that run concurrently in one process. ``limiter_for``
hands out one ModelLimiter per model declaration per event loop.

Rates are asyncio-throttle's ``Throttler`` (a sliding window of the last
``period`` seconds) behind a FIFO gate. Alone, the Throttler lets every
waiter poll and race for a freed place (one call can starve, and 50 queued
calls on `rate: 60/min` would wake 5,000 times a second at its default
10 ms); behind the gate only the first waiter polls, the others wait their
turn in order. The poll interval is scaled to the period (``retry_interval``),
so a freed place is taken within 0.2 % of the period. The Throttler reads
``time.monotonic`` and ``asyncio.sleep`` as module globals; a limiter given
another clock runs the Throttler's own methods with that clock instead
(``_with_clock``), without touching the module, which other code may share.
"""

from __future__ import annotations

import asyncio
import time
import types
import weakref
from collections import deque
from dataclasses import replace
from typing import Any, Awaitable, Callable

from asyncio_throttle import Throttler

from fmflow.providers.base import ModelConfig

__all__ = ["ModelLimiter", "RateGate", "limiter_for", "retry_interval", "share_limits"]


def retry_interval(period: float) -> float:
    """How often the first waiter looks for a free place: 1/500 of the period, within 1 ms … 0.5 s."""
    return min(0.5, max(0.001, period / 500))


class RateGate:
    """At most ``limit`` acquisitions in any ``period`` seconds, served first come, first served."""

    def __init__(self, limit: int, period: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        if limit < 1 or period <= 0:
            raise ValueError(f"rate must be at least 1 request per positive period, got {limit}/{period}s")
        self.limit = limit
        self.period = period
        self.throttler = Throttler(rate_limit=limit, period=period, retry_interval=retry_interval(period))
        if clock is not time.monotonic or sleep is not asyncio.sleep:
            _with_clock(self.throttler, clock, sleep)
        self._clock = clock
        # asyncio.Lock queues its waiters FIFO: the earliest caller is the one that polls.
        self._gate = asyncio.Lock()
        # The latest waits (seconds from arrival to a place), for tests and traces; bounded for servers.
        self.waits: "deque[float]" = deque(maxlen=1000)

    async def acquire(self) -> None:
        arrived = self._clock()
        async with self._gate:
            await self.throttler.acquire()
        waited = self._clock() - arrived
        if waited > 0:
            self.waits.append(waited)


def _with_clock(throttler: Throttler, clock: Callable[[], float], sleep: Callable[[float], Awaitable[Any]]) -> None:
    """Make ``throttler`` run its own ``flush`` and ``acquire`` with ``clock`` and ``sleep`` in place
    of the module globals ``time.monotonic`` and ``asyncio.sleep`` they read."""
    names = {"time": types.SimpleNamespace(monotonic=clock), "asyncio": types.SimpleNamespace(sleep=sleep)}
    for name in ("flush", "acquire"):
        function = getattr(Throttler, name)
        rebound = types.FunctionType(function.__code__, {**function.__globals__, **names}, function.__name__,
                                     function.__defaults__, function.__closure__)
        setattr(throttler, name, types.MethodType(rebound, throttler))


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
        self.window = RateGate(rate[0], rate[1], clock=clock, sleep=sleep) if rate is not None else None
        self.in_flight = 0
        self.max_in_flight = 0
        self.started = 0

    def slot(self) -> "_Slot":
        """``async with limiter.slot():`` waits for a free slot and a place in the rate window,
        and holds the slot inside.

        The concurrency slot is taken first and the rate stamp last, just
        before the call is sent: a stamp taken while still queued for a slot
        would be spent long before the request, and the requests would then
        leave in a burst above the rate once slots free up.
        """
        return _Slot(self)


class _Slot:
    """One call's hold on a ModelLimiter (a class, not @asynccontextmanager: it is on every call)."""

    __slots__ = ("limiter",)

    def __init__(self, limiter: ModelLimiter) -> None:
        self.limiter = limiter

    async def __aenter__(self) -> None:
        limiter = self.limiter
        if limiter._semaphore is not None:
            await limiter._semaphore.acquire()
        try:
            if limiter.window is not None:
                await limiter.window.acquire()
        except BaseException:
            if limiter._semaphore is not None:
                limiter._semaphore.release()
            raise
        limiter.in_flight += 1
        limiter.started += 1
        if limiter.in_flight > limiter.max_in_flight:
            limiter.max_in_flight = limiter.in_flight

    async def __aexit__(self, *exc_info: Any) -> None:
        limiter = self.limiter
        limiter.in_flight -= 1
        if limiter._semaphore is not None:
            limiter._semaphore.release()


# asyncio primitives bind to the loop that first uses them, so limiters are
# kept per loop. The key is weak, but a limiter that has made a call wait holds
# its loop (the primitive keeps it), so the weak key alone would keep every such
# loop for good: a closed loop's limiters are dropped when the next loop starts.
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
        for closed in [other for other in _LIMITERS if other.is_closed()]:
            del _LIMITERS[closed]
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
