"""Transport-level retries: the `retry:` and `timeout:` keys of a model.

One model call is retried only for faults the provider marks retryable (429,
5xx, timeouts, dropped connections). Backoff is exponential with *full
jitter*: ``delay = min(max_delay, base_delay * 2**attempt) * random()``, so
concurrent callers that failed together do not retry in lockstep. A
server's ``Retry-After`` is a floor: we never come back sooner than asked.

Everything that touches time (``sleep``, ``random``) is injectable so tests
can check the waits without waiting.
"""

from __future__ import annotations

import asyncio
import inspect
import random as _random
from typing import Any, Awaitable, Callable, TypeVar

from fmflow.providers.base import ProviderError

T = TypeVar("T")

__all__ = ["call_with_retries", "with_timeout"]


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    retries: int,
    timeout: float | None,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
    on_retry: Callable[[dict[str, Any]], Any] | None = None,
) -> tuple[T, list[dict[str, Any]]]:
    """Run ``call()`` with a per-attempt timeout, retrying retryable ProviderErrors.

    Returns ``(result, attempts)`` where ``attempts`` lists the failed attempts
    as ``{attempt, error, status, waited}`` (``attempt`` counts from 1,
    ``waited`` is the backoff slept after it) for the trace. A ProviderError
    that ends the call — not retryable, or the last of ``retries + 1`` tries —
    is raised with the same list attached as ``.attempts``.

    CancelledError is never caught: cancelling the caller stops the attempt
    or the backoff sleep at once. Other exceptions are bugs, not transport
    faults, and propagate untouched.
    """
    retries = max(0, int(retries))
    if timeout is not None and timeout <= 0:
        timeout = None  # `timeout: 0s` would fail every call; read it as "no limit"
    attempts: list[dict[str, Any]] = []
    for attempt in range(retries + 1):
        try:
            return await _attempt(call, timeout), attempts
        except ProviderError as err:
            last = attempt == retries or not err.retryable
            waited = 0.0 if last else _backoff(attempt, err.retry_after, base_delay, max_delay, random)
            record = {"attempt": attempt + 1, "error": str(err), "status": err.status, "waited": waited}
            attempts.append(record)
            if last:
                err.attempts = list(attempts)  # type: ignore[attr-defined]
                raise
            if on_retry is not None:
                # The hook may be a plain function or a coroutine (e.g. a trace writer).
                result = on_retry(dict(record))
                if inspect.isawaitable(result):
                    await result
            await sleep(waited)
    raise AssertionError("unreachable")  # the loop always returns or raises


async def with_timeout(awaitable: Awaitable[T], timeout: float | None) -> T:
    """Await with a time limit; running out is a retryable ProviderError."""
    return await _attempt(lambda: awaitable, timeout)


async def _attempt(call: Callable[[], Awaitable[T]], timeout: float | None) -> T:
    try:
        if timeout is None:
            return await call()
        # asyncio.timeout turns only its *own* cancellation into TimeoutError;
        # a cancel from outside still arrives here as CancelledError and escapes.
        async with asyncio.timeout(timeout):
            return await call()
    except TimeoutError as exc:
        # Also covers a TimeoutError raised by the provider's own client.
        message = f"timed out after {timeout:g}s" if timeout is not None else "timed out"
        raise ProviderError(message, retryable=True) from exc


def _backoff(attempt: int, retry_after: float | None, base_delay: float, max_delay: float,
             random: Callable[[], float]) -> float:
    # Exponent capped so 2**attempt cannot overflow a float for absurd retry counts.
    delay = min(max_delay, base_delay * 2 ** min(attempt, 60)) * random()
    if retry_after is not None and retry_after > delay:
        delay = float(retry_after)
    return delay
