"""runtime/deadlines.py: call time limits that share one timer per limit instead of one per call."""

import asyncio

import pytest

from flowfiles import load

from fmflow.runtime.deadlines import deadline


def count_timers(loop: asyncio.AbstractEventLoop) -> list:
    """Record every timer armed on ``loop`` from now on."""
    armed = []
    call_at = loop.call_at

    def counting_call_at(when, callback, *args, **kwargs):
        armed.append(callback)
        return call_at(when, callback, *args, **kwargs)

    loop.call_at = counting_call_at
    return armed


def test_calls_that_return_in_time_share_one_timer():
    async def main():
        armed = count_timers(asyncio.get_running_loop())

        async def call(i):
            async with deadline(60):
                await asyncio.sleep(0)
                return i

        results = await asyncio.gather(*(call(i) for i in range(1000)))
        return results, len(armed)

    results, timers = asyncio.run(main())
    assert results == list(range(1000))
    # asyncio.timeout(60) arms (and cancels) one timer per call: 1,000 here.
    assert timers == 1


def test_a_call_past_its_limit_times_out_at_its_own_deadline():
    async def main():
        loop = asyncio.get_running_loop()
        ended = {}

        async def call(name, hang):
            started = loop.time()
            limit = deadline(0.1)
            try:
                async with limit:
                    await asyncio.sleep(hang)
                return name, "returned", limit.expired()
            except TimeoutError:
                ended[name] = loop.time() - started
                return name, "timed out", limit.expired()

        async def later(name, hang, delay):
            await asyncio.sleep(delay)
            return await call(name, hang)

        outcomes = await asyncio.gather(call("first", 10), later("second", 10, 0.05), call("quick", 0.01))
        return outcomes, ended

    outcomes, ended = asyncio.run(main())
    assert outcomes == [("first", "timed out", True), ("second", "timed out", True), ("quick", "returned", False)]
    # Each expires at its own deadline, never before it: the second started 50 ms later.
    assert ended["first"] >= 0.1 and ended["second"] >= 0.1
    assert ended["first"] < 5 and ended["second"] < 5


def test_limits_of_different_lengths_do_not_wait_for_each_other():
    async def main():
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def hang(seconds):
            try:
                async with deadline(seconds):
                    await asyncio.sleep(30)
            except TimeoutError:
                return loop.time() - started

        long_call = asyncio.ensure_future(hang(20))
        short = await hang(0.05)
        long_call.cancel()
        return short

    # The 20 s limit's timer is armed first; the 50 ms one still fires on time.
    assert 0.05 <= asyncio.run(main()) < 5


def test_a_cancel_from_outside_stays_a_cancel():
    async def main():
        entered = asyncio.Event()

        async def call():
            async with deadline(60):
                entered.set()
                await asyncio.sleep(30)

        task = asyncio.ensure_future(call())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_timeout_error_raised_inside_is_not_the_limits():
    async def main():
        limit = deadline(60)
        with pytest.raises(TimeoutError, match="the server's own"):
            async with limit:
                raise TimeoutError("the server's own")
        return limit.expired()

    assert asyncio.run(main()) is False


def test_no_limit_arms_nothing():
    async def main():
        armed = count_timers(asyncio.get_running_loop())
        async with deadline(None) as timeout:
            await asyncio.sleep(0)
        return len(armed), timeout.expired()

    assert asyncio.run(main()) == (0, False)


def test_a_call_that_returns_after_its_limit_leaves_the_next_ones_their_full_time():
    """The shared timer, woken for a call that already returned, re-arms for the next one."""
    async def main():
        loop = asyncio.get_running_loop()

        async def call(hang):
            async with deadline(0.1):
                await asyncio.sleep(hang)

        await call(0.01)              # arms the timer for +0.1 s and returns
        await asyncio.sleep(0.05)
        started = loop.time()
        try:
            await call(10)            # the timer wakes at the first's deadline, then re-arms for this one
        except TimeoutError:
            return loop.time() - started

    assert 0.1 <= asyncio.run(main()) < 5


def test_closed_loops_are_not_kept_by_their_queues():
    import gc
    import weakref

    loops = []

    async def call():
        loops.append(weakref.ref(asyncio.get_running_loop()))
        async with deadline(60):
            await asyncio.sleep(0)

    for _ in range(10):
        asyncio.run(call())
    gc.collect()
    assert [ref for ref in loops if ref() is not None] == []


TOOL_AFTER_PROMPT = '''
    model m {
      provider: "replay"
      options: { responses: ["ok"], cycle: true }
    }
    prompt ask(q: str) -> str {
      model: m
      template: "Q: {{ q }}"
    }
    tool shout(text: str) -> str = python("shouting:shout")
    flow f(q: str) -> str {
      return shout(ask(q: q))
    }
'''


def test_model_and_tool_calls_of_many_runs_arm_one_timer_per_limit(tmp_path):
    """A model call and a tool call each have a time limit (120 s and 60 s by default);
    500 runs at once arm a timer for each limit, not one for each call."""
    (tmp_path / "shouting.py").write_text("async def shout(text):\n    return text.upper()\n")
    flow = load(tmp_path, TOOL_AFTER_PROMPT, "f", cache=False, trace=False)

    async def main():
        armed = count_timers(asyncio.get_running_loop())
        results = await asyncio.gather(*(flow.arun(q=str(i)) for i in range(500)))
        return results, [getattr(callback, "__qualname__", "") for callback in armed]

    results, armed = asyncio.run(main())
    assert results == ["OK"] * 500
    assert len(armed) <= 2, armed
