"""Transport-level retries: the `retry:` and `timeout:` keys of a model.

One model call is retried only for faults the provider marks retryable (429,
5xx, timeouts, dropped connections). Backoff is exponential with *full
jitter*: ``delay = min(max_delay, base_delay * 2**attempt) * random()``, so
concurrent callers that failed together do not retry in lockstep.

A server's ``Retry-After`` is a floor, within limits: we never come back
sooner than asked, but never wait longer than ``max_delay`` either (the wait
is cut and the attempt's record says so), and when the server asks for more
than the model may wait at all (``max_wait``, the model's timeout) the call
gives up at once instead of sleeping for an hour.

Everything that touches time (``sleep``, ``random``) is injectable so tests
can check the waits without waiting.
"""

from __future__ import annotations

import asyncio
import inspect
import random as _random
import sys
from functools import partial
from typing import Any, Awaitable, Callable, TypeVar

from fmflow.providers.base import ProviderError

from .deadlines import deadline

T = TypeVar("T")

__all__ = ["MAX_BACKOFF", "call_with_retries", "terminal_notice", "with_timeout"]

# The longest one backoff sleeps, whatever the server's Retry-After says.
MAX_BACKOFF = 30.0


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    retries: int,
    timeout: float | None,
    max_wait: float | None = None,
    base_delay: float = 0.5,
    max_delay: float = MAX_BACKOFF,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
    on_retry: Callable[[dict[str, Any]], Any] | None = None,
    notify: Callable[[str], None] | None = None,
) -> tuple[T, list[dict[str, Any]]]:
    """Run ``call()`` with a per-attempt timeout, retrying retryable ProviderErrors.

    Returns ``(result, attempts)`` where ``attempts`` lists the failed attempts
    as ``{attempt, error, status, waited}`` (``attempt`` counts from 1,
    ``waited`` is the backoff slept after it; ``retry_after`` is added when the
    server asked for a wait, ``capped`` when we waited less than asked) for the
    trace. A ProviderError that ends the call — not retryable, the last of
    ``retries + 1`` tries, or a Retry-After beyond ``max_wait`` — is raised
    with the same list attached as ``.attempts``. ``notify`` receives a
    one-line sentence whenever a server's Retry-After is cut or ends the call.

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
            try:
                # No frame in between when there is no limit here (a model call's limit is inside `call`).
                result = await (call() if timeout is None else with_timeout(call(), timeout))
            except TimeoutError as exc:   # the provider's own client timing out (with_timeout converts its own)
                raise _timed_out(timeout) from exc
            return result, attempts
        except ProviderError as err:
            error, waited, note = err, 0.0, None
            last = attempt == retries or not err.retryable
            if not last:
                waited, note = _backoff(attempt, err.retry_after, base_delay, max_delay, random)
                if err.retry_after is not None and max_wait is not None and err.retry_after > max_wait:
                    error, last = _too_long_to_wait(err, max_wait), True
            record = _record(attempt, error, 0.0 if last else waited, capped=note is not None and not last)
            attempts.append(record)
            if last:
                error.attempts = list(attempts)  # type: ignore[attr-defined]
                if error is not err:
                    if notify is not None:
                        notify(str(error))
                    raise error from err
                raise
            if note is not None and notify is not None:
                notify(note)
            if on_retry is not None:
                # The hook may be a plain function or a coroutine (e.g. a trace writer).
                result = on_retry(dict(record))
                if inspect.isawaitable(result):
                    await result
            await sleep(waited)
    raise AssertionError("unreachable")  # the loop always returns or raises


def _record(attempt: int, error: ProviderError, waited: float, capped: bool) -> dict[str, Any]:
    record = {"attempt": attempt + 1, "error": str(error), "status": error.status, "waited": waited}
    if error.retry_after is not None:
        record["retry_after"] = error.retry_after
    if capped:
        record["capped"] = True
    return record


def _too_long_to_wait(err: ProviderError, max_wait: float) -> ProviderError:
    """The error that ends a call whose server asks for a wait longer than the model may wait."""
    return ProviderError(f"{err}; the server asked to wait {err.retry_after:g} s, longer than the model may "
                         f"wait (its timeout is {max_wait:g}s), so fmflow did not wait", retryable=False,
                         status=err.status, retry_after=err.retry_after)


async def with_timeout(awaitable: Awaitable[T], timeout: float | None, *, default: bool = False) -> T:
    """Await with a time limit; running out is a retryable ProviderError.

    ``default``: the limit is the default deadline of a model without `timeout:`,
    which the message says (else a user who set none wonders where it came from).
    """
    try:
        if timeout is None:
            return await awaitable
        # The deadline turns only its *own* cancellation into TimeoutError;
        # a cancel from outside still arrives here as CancelledError and escapes.
        async with deadline(timeout):
            return await awaitable
    except TimeoutError as exc:
        # Also covers a TimeoutError raised by the provider's own client.
        raise _timed_out(timeout, default) from exc


def _timed_out(timeout: float | None, default: bool = False) -> ProviderError:
    message = f"timed out after {timeout:g}s" if timeout is not None else "timed out"
    if default:
        message += " (the default deadline of a model without `timeout:`)"
    return ProviderError(message, retryable=True)


def _backoff(attempt: int, retry_after: float | None, base_delay: float, max_delay: float,
             random: Callable[[], float]) -> tuple[float, str | None]:
    """The wait after a failed attempt, and a sentence when the server's Retry-After was cut."""
    # Exponent capped so 2**attempt cannot overflow a float for absurd retry counts.
    delay = min(max_delay, base_delay * 2 ** min(attempt, 60)) * random()
    if retry_after is None or retry_after <= delay:
        return delay, None
    if retry_after > max_delay:
        return max_delay, (f"the server asked to wait {retry_after:g} s; waiting {max_delay:g} s "
                           f"(the longest backoff) before trying again")
    return float(retry_after), None


def terminal_notice(model: str) -> Callable[[str], None]:
    """A notifier printing one line per notice on stderr when stderr is a terminal. Whether it
    is one is asked when there is something to say: a call that needs no notice (nearly all)
    costs no system call."""
    return partial(_notice, model)


def _notice(model: str, text: str) -> None:
    # Looked up at each call: a live progress display swaps sys.stderr while it runs.
    stream = sys.stderr
    if stream is not None and stream.isatty():
        print(f"fmflow: model '{model}': {text}", file=stream)
