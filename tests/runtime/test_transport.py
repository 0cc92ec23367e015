"""call_with_retries: backoff, Retry-After, timeouts, cancellation. Fake sleep: no real waiting."""

from __future__ import annotations

import asyncio

import pytest

from fmflow.providers import ProviderError
from fmflow.runtime.transport import call_with_retries


class FakeSleep:
    def __init__(self):
        self.waits: list[float] = []

    async def __call__(self, seconds):
        self.waits.append(seconds)


def script(*outcomes):
    """A call() that plays outcomes in order (exceptions are raised) and counts calls."""
    calls = []

    async def call():
        outcome = outcomes[len(calls)]
        calls.append(outcome)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return call, calls


def run(coro):
    return asyncio.run(coro)


def test_success_first_time_has_no_attempts():
    call, calls = script("ok")
    assert run(call_with_retries(call, retries=3, timeout=None)) == ("ok", [])
    assert len(calls) == 1


def test_429_then_success_records_attempts():
    sleep, seen = FakeSleep(), []
    call, calls = script(ProviderError("slow down", retryable=True, status=429), "ok")
    result, attempts = run(call_with_retries(call, retries=2, timeout=None, sleep=sleep,
                                             random=lambda: 0.5, on_retry=seen.append))
    assert result == "ok" and len(calls) == 2
    assert attempts == [{"attempt": 1, "error": "slow down", "status": 429, "waited": 0.25}]
    assert sleep.waits == [0.25] and seen == attempts


def test_async_on_retry_is_awaited():
    seen = []

    async def hook(record):
        seen.append(record["attempt"])

    call, _ = script(ProviderError("x", retryable=True), ProviderError("y", retryable=True), "ok")
    run(call_with_retries(call, retries=2, timeout=None, sleep=FakeSleep(), on_retry=hook))
    assert seen == [1, 2]


def test_retry_after_is_a_floor():
    sleep = FakeSleep()
    call, _ = script(ProviderError("a", retryable=True, status=429, retry_after=7),
                     ProviderError("b", retryable=True, status=429, retry_after=0.1), "ok")
    _, attempts = run(call_with_retries(call, retries=3, timeout=None, base_delay=1.0,
                                        sleep=sleep, random=lambda: 1.0))
    # First: jitter would give 1.0 but the server asked for 7. Second: jitter 2.0 beats 0.1.
    assert sleep.waits == [7.0, 2.0]
    assert [a["waited"] for a in attempts] == [7.0, 2.0]


def test_non_retryable_fails_at_once():
    sleep = FakeSleep()
    call, calls = script(ProviderError("bad key", status=401), "never")
    with pytest.raises(ProviderError) as exc:
        run(call_with_retries(call, retries=5, timeout=None, sleep=sleep))
    assert len(calls) == 1 and sleep.waits == []
    assert exc.value.attempts == [{"attempt": 1, "error": "bad key", "status": 401, "waited": 0.0}]


def test_exhausted_retries_raise_last_error_with_attempts():
    errors = [ProviderError(f"e{i}", retryable=True, status=503) for i in range(3)]
    call, calls = script(*errors)
    with pytest.raises(ProviderError) as exc:
        run(call_with_retries(call, retries=2, timeout=None, sleep=FakeSleep(), random=lambda: 0.0))
    assert exc.value is errors[-1] and len(calls) == 3
    assert [(a["attempt"], a["error"]) for a in exc.value.attempts] == [(1, "e0"), (2, "e1"), (3, "e2")]


def test_timeout_is_retried_then_fails_with_attempts():
    # The call never finishes; timeout=0.001 expires on the loop's clock at once.
    # Only the fact of the timeout is asserted, never how long anything took.
    calls, sleep = [], FakeSleep()

    async def hang():
        calls.append(1)
        await asyncio.Event().wait()

    with pytest.raises(ProviderError) as exc:
        run(call_with_retries(hang, retries=1, timeout=0.001, sleep=sleep))
    assert exc.value.retryable and str(exc.value) == "timed out after 0.001s"
    assert len(calls) == 2 and len(sleep.waits) == 1
    assert [a["error"] for a in exc.value.attempts] == ["timed out after 0.001s"] * 2


def test_timeout_then_success():
    state = {"n": 0}

    async def flaky():
        state["n"] += 1
        if state["n"] == 1:
            await asyncio.Event().wait()
        return "ok"

    result, attempts = run(call_with_retries(flaky, retries=1, timeout=0.001, sleep=FakeSleep()))
    assert result == "ok" and attempts[0]["error"].startswith("timed out")


@pytest.mark.parametrize("timeout", [None, 60])
def test_the_clients_own_timeout_is_a_retryable_failure(timeout):
    """A provider's HTTP client may raise TimeoutError itself: that attempt failed, the next is tried."""
    call, calls = script(TimeoutError("read timed out"), "ok")
    result, attempts = run(call_with_retries(call, retries=1, timeout=timeout, sleep=FakeSleep()))
    assert result == "ok" and len(calls) == 2
    assert attempts[0]["error"] == ("timed out" if timeout is None else "timed out after 60s")


def test_the_clients_own_timeout_on_the_last_attempt_is_a_provider_error():
    call, _ = script(TimeoutError("read timed out"))
    with pytest.raises(ProviderError, match="timed out") as raised:
        run(call_with_retries(call, retries=0, timeout=None, sleep=FakeSleep()))
    assert raised.value.retryable and isinstance(raised.value.__cause__, TimeoutError)


@pytest.mark.parametrize("r", [0.0, 0.3, 0.999999])
def test_jitter_is_bounded_and_capped(r):
    errors = [ProviderError("x", retryable=True) for _ in range(8)]
    call, _ = script(*errors, "ok")
    sleep = FakeSleep()
    run(call_with_retries(call, retries=8, timeout=None, base_delay=0.5, max_delay=10.0,
                          sleep=sleep, random=lambda: r))
    for attempt, wait in enumerate(sleep.waits):
        cap = min(10.0, 0.5 * 2 ** attempt)
        assert 0.0 <= wait <= cap
        assert wait == pytest.approx(cap * r)


def test_real_random_stays_within_bounds():
    errors = [ProviderError("x", retryable=True) for _ in range(6)]
    call, _ = script(*errors, "ok")
    sleep = FakeSleep()
    run(call_with_retries(call, retries=6, timeout=None, base_delay=1.0, max_delay=4.0, sleep=sleep))
    assert all(0.0 <= w <= min(4.0, 2 ** i) for i, w in enumerate(sleep.waits))


def test_other_exceptions_are_not_retried():
    call, calls = script(ValueError("bug"), "never")
    with pytest.raises(ValueError):
        run(call_with_retries(call, retries=3, timeout=None, sleep=FakeSleep()))
    assert len(calls) == 1


def test_cancellation_during_call_is_not_retried():
    async def go():
        started, calls = asyncio.Event(), []

        async def hang():
            calls.append(1)
            started.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(call_with_retries(hang, retries=5, timeout=60, sleep=FakeSleep()))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(calls) == 1
        assert asyncio.all_tasks() == {asyncio.current_task()}

    run(go())


def test_cancellation_during_backoff_is_not_retried():
    async def go():
        sleeping, calls = asyncio.Event(), []

        async def blocking_sleep(seconds):
            sleeping.set()
            await asyncio.Event().wait()

        async def fail():
            calls.append(1)
            raise ProviderError("503", retryable=True, status=503)

        task = asyncio.create_task(call_with_retries(fail, retries=5, timeout=None, sleep=blocking_sleep))
        await sleeping.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(calls) == 1
        assert asyncio.all_tasks() == {asyncio.current_task()}

    run(go())


# ------------------------------------------------------------ Retry-After within limits

def test_retry_after_longer_than_the_longest_backoff_is_capped_and_said():
    sleep, notices = FakeSleep(), []
    call, _ = script(ProviderError("busy", retryable=True, status=429, retry_after=100), "ok")
    result, attempts = run(call_with_retries(call, retries=1, timeout=None, max_wait=120, max_delay=30,
                                             sleep=sleep, random=lambda: 0.5, notify=notices.append))
    assert result == "ok" and sleep.waits == [30]
    assert attempts == [{"attempt": 1, "error": "busy", "status": 429, "waited": 30, "retry_after": 100,
                         "capped": True}]
    assert notices == ["the server asked to wait 100 s; waiting 30 s (the longest backoff) before trying again"]


def test_retry_after_longer_than_the_model_may_wait_fails_at_once():
    sleep, notices = FakeSleep(), []
    call, calls = script(ProviderError("slow down", retryable=True, status=429, retry_after=3600), "never")
    with pytest.raises(ProviderError) as exc:
        run(call_with_retries(call, retries=3, timeout=None, max_wait=5, sleep=sleep, notify=notices.append))
    assert len(calls) == 1 and sleep.waits == []  # no sleeping at all
    message = str(exc.value)
    assert message.startswith("slow down; the server asked to wait 3600 s, longer than the model may wait "
                              "(its timeout is 5s)")
    assert not exc.value.retryable and exc.value.status == 429
    assert exc.value.attempts == [{"attempt": 1, "error": message, "status": 429, "waited": 0.0,
                                   "retry_after": 3600}]
    assert notices == [message]


def test_retry_after_within_the_models_wait_is_honoured_silently():
    sleep, notices = FakeSleep(), []
    call, _ = script(ProviderError("busy", retryable=True, status=503, retry_after=3), "ok")
    _, attempts = run(call_with_retries(call, retries=1, timeout=None, max_wait=5, sleep=sleep,
                                        random=lambda: 0.0, notify=notices.append))
    assert sleep.waits == [3.0] and notices == [] and "capped" not in attempts[0]


def test_the_last_attempt_does_not_give_up_over_retry_after():
    # No retries left: the server's own error ends the call, not a message about waiting.
    call, _ = script(ProviderError("slow down", retryable=True, status=429, retry_after=3600))
    with pytest.raises(ProviderError) as exc:
        run(call_with_retries(call, retries=0, timeout=None, max_wait=5, sleep=FakeSleep()))
    assert str(exc.value) == "slow down"


def test_a_model_without_timeout_has_the_default_deadline():
    from fmflow.providers.base import DEFAULT_TIMEOUT, ModelConfig, call_deadline

    assert DEFAULT_TIMEOUT == 120.0
    assert call_deadline(ModelConfig(name="m", provider="openai")) == 120.0
    assert call_deadline(ModelConfig(name="m", provider="openai", timeout=0.0)) == 120.0
    assert call_deadline(ModelConfig(name="m", provider="openai", timeout=5.0)) == 5.0


def test_the_default_deadline_is_named_when_it_runs_out():
    from fmflow.runtime.transport import with_timeout

    with pytest.raises(ProviderError) as exc:
        run(with_timeout(asyncio.Event().wait(), 0.001, default=True))
    assert str(exc.value) == "timed out after 0.001s (the default deadline of a model without `timeout:`)"
