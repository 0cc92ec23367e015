"""Time limits of model and tool calls, without a timer per call.

Every model call and tool call has a time limit: its `timeout:`, else a
default of a minute or two. ``asyncio.timeout(seconds)`` would arm one timer
per call on the event loop's heap, and cancel it, nearly always, when the
call returns. A cancelled timer stays in the heap until the loop pops it or
rebuilds the heap, so at thousands of calls a second the heap is mostly dead
timers, and every live one (a model's 20 ms reply, a backoff) is pushed and
popped through more of them, each comparison a Python call. In
`benchmarks/batch_throughput.py` (b) that cost a fifth of the CPU of a
record.

Calls with the same limit reach their deadlines in the order they start, so
one timer per limit and loop is enough. ``deadline(seconds)`` enters an
``asyncio.timeout(None)`` (no timer) and puts it in its limit's queue, in
start order. The queue's one timer wakes at the earliest deadline, expires
every timeout that is due through the Timeout's own ``reschedule``, and
sleeps until the next deadline in the queue; a call that returns just
leaves the queue. Expiry is as exact as asyncio.timeout's, and cancellation
behaves as its own: the expired Timeout cancels its task and turns that
cancellation, and only that one, into TimeoutError.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

__all__ = ["deadline"]


class deadline:
    """``async with deadline(seconds) as timeout:`` limits the block as ``asyncio.timeout(seconds)``
    does (``None``: no limit); ``timeout`` is the asyncio.Timeout, so ``timeout.expired()``
    tells a timeout of this block from a TimeoutError raised inside it."""

    __slots__ = ("seconds", "timeout", "_queue")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.timeout = asyncio.timeout(None)
        self._queue: _LimitQueue | None = None

    async def __aenter__(self) -> asyncio.Timeout:
        await self.timeout.__aenter__()
        if self.seconds is not None:
            self._queue = _queue_for(self.seconds)
            self._queue.join(self.timeout)
        return self.timeout

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        if self._queue is not None:
            self._queue.leave(self.timeout)
        return await self.timeout.__aexit__(*exc_info)

    def expired(self) -> bool:
        return self.timeout.expired()


class _LimitQueue:
    """The running timeouts of one limit on one loop, earliest deadline first, and their one timer."""

    __slots__ = ("loop", "seconds", "waiting", "armed")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        # A weak reference: _QUEUES is keyed weakly by the loop, which a strong one here would keep
        # alive for good (with every loop a process's asyncio.run() calls ever made).
        self.loop = weakref.proxy(loop)
        self.seconds = seconds
        # Insertion order is deadline order: same limit, and the loop's clock never goes back.
        self.waiting: dict[asyncio.Timeout, float] = {}
        self.armed = False   # whether the timer is set (not the handle, which holds the loop)

    def join(self, timeout: asyncio.Timeout) -> None:
        when = self.loop.time() + self.seconds
        self.waiting[timeout] = when
        if not self.armed:
            self.loop.call_at(when, self._wake)
            self.armed = True

    def leave(self, timeout: asyncio.Timeout) -> None:
        # The timer stays armed even when the queue empties: cancelling it would leave a dead
        # timer in the heap, the very cost this module avoids. It wakes once, finds nothing due.
        self.waiting.pop(timeout, None)

    def _wake(self) -> None:
        self.armed = False
        now = self.loop.time()
        waiting = self.waiting
        while waiting:
            timeout, when = next(iter(waiting.items()))
            if when > now:
                self.loop.call_at(when, self._wake)
                self.armed = True
                return
            del waiting[timeout]
            timeout.reschedule(when)   # in the past: the Timeout expires on the loop's next turn


# Queues are per loop (a timer belongs to one); the weak key lets a closed loop's queues go with it.
_QUEUES: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, _LimitQueue]]" = \
    weakref.WeakKeyDictionary()


def _queue_for(seconds: float) -> _LimitQueue:
    loop = asyncio.get_running_loop()
    queues = _QUEUES.get(loop)
    if queues is None:
        queues = _QUEUES[loop] = {}
    queue = queues.get(seconds)
    if queue is None:
        queue = queues[seconds] = _LimitQueue(loop, seconds)
    return queue
