"""ModelLimiter / limiter_for: concurrency and rate shared per model, per event loop. Fake clock only."""

from __future__ import annotations

import asyncio

import pytest

from fmflow.providers import ModelConfig
from fmflow.runtime.limits import ModelLimiter, RateGate, limiter_for, retry_interval


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self):
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self):
        return self.now

    async def sleep(self, seconds):
        self.waits.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # still yield, as a real sleep would


async def hold_slots(limiter, n, release, entered):
    """n tasks that each take a slot and keep it until `release` is set."""
    async def one():
        async with limiter.slot():
            entered.append(1)
            await release.wait()
    return [asyncio.create_task(one()) for _ in range(n)]


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


def test_concurrency_never_exceeded_under_50_tasks():
    async def go():
        limiter, release, entered = ModelLimiter(concurrency=4), asyncio.Event(), []
        tasks = await hold_slots(limiter, 50, release, entered)
        await settle()
        # Exactly the limit got in; the rest wait.
        assert (limiter.in_flight, limiter.started, len(entered)) == (4, 4, 4)
        release.set()
        await asyncio.gather(*tasks)
        return limiter

    limiter = run(go())
    assert (limiter.max_in_flight, limiter.started, limiter.in_flight) == (4, 50, 0)


def test_all_tasks_start_when_limit_allows():
    async def go():
        limiter, release, entered = ModelLimiter(concurrency=50), asyncio.Event(), []
        tasks = await hold_slots(limiter, 50, release, entered)
        await settle()
        assert limiter.in_flight == 50 == len(entered)
        release.set()
        await asyncio.gather(*tasks)
        return limiter

    assert run(go()).max_in_flight == 50


def test_no_limits_is_a_counting_pass_through():
    async def go():
        limiter, release, entered = ModelLimiter(), asyncio.Event(), []
        tasks = await hold_slots(limiter, 10, release, entered)
        await settle()
        assert limiter.in_flight == 10
        release.set()
        await asyncio.gather(*tasks)

    run(go())


def test_slot_released_on_error_and_cancel():
    async def go():
        limiter = ModelLimiter(concurrency=1)
        with pytest.raises(RuntimeError):
            async with limiter.slot():
                raise RuntimeError("call failed")
        blocker_in, release = asyncio.Event(), asyncio.Event()

        async def blocker():
            async with limiter.slot():
                blocker_in.set()
                await release.wait()

        b = asyncio.create_task(blocker())
        await blocker_in.wait()
        waiter = asyncio.create_task(blocker())  # queued behind b
        await settle()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await b
        async with limiter.slot():  # free again: nothing leaked
            assert limiter.in_flight == 1
        assert limiter.in_flight == 0

    run(go())


def test_rate_with_fake_clock():
    t = FakeTime()
    step = retry_interval(10.0)

    async def go():
        limiter = ModelLimiter(rate=(3, 10.0), clock=t.clock, sleep=t.sleep)
        starts = []

        async def one():
            async with limiter.slot():
                starts.append(t.now)

        await asyncio.gather(*(one() for _ in range(7)))
        return starts

    starts = run(go())
    # A place frees when the oldest start is one period old; the first waiter finds it within one poll.
    for start, ideal in zip(starts, [0, 0, 0, 10, 10, 10, 20]):
        assert ideal <= start <= ideal + (ideal / 10 + 1) * step
    # No window of one period ever holds more than 3 starts.
    assert all(sum(1 for s in starts if a <= s < a + 10.0) <= 3 for a in starts)
    # asyncio-throttle polls, but only the first waiter does, at the interval scaled to the period.
    assert set(t.waits) == {step}
    assert len(t.waits) <= 20.0 / step + 4


def test_waiters_are_served_in_order_under_contention():
    t = FakeTime()

    async def go():
        gate = RateGate(2, 1.0, clock=t.clock, sleep=t.sleep)
        order = []

        async def one(n):
            await gate.acquire()
            order.append((n, t.now))

        await asyncio.gather(*(one(n) for n in range(12)))
        return gate, order

    gate, order = run(go())
    assert [n for n, _ in order] == list(range(12))          # first come, first served: nobody overtakes
    # Each window opens when the previous one's first stamp is a period old, at most one poll late.
    step = retry_interval(1.0)
    for (_, when), ideal in zip(order, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]):
        assert ideal <= when <= ideal + (ideal + 1) * step
    assert len(gate.waits) == 10 and 5.0 <= max(gate.waits) <= 5.0 + 6 * step


def test_the_gate_frees_places_as_stamps_age():
    t = FakeTime()

    async def go():
        gate = RateGate(2, 60.0, clock=t.clock, sleep=t.sleep)
        await gate.acquire()          # t=0
        t.now = 45.0
        await gate.acquire()          # t=45
        await gate.acquire()          # full: waits until the t=0 stamp leaves, at t=60
        assert t.now == pytest.approx(60.0, abs=2 * retry_interval(60.0))
        await gate.acquire()          # then until the t=45 stamp leaves, at t=105
        assert t.now == pytest.approx(105.0, abs=2 * retry_interval(60.0))
        return list(gate.waits)

    assert run(go()) == pytest.approx([15.0, 45.0], abs=2 * retry_interval(60.0))


def test_the_throttler_module_keeps_its_own_clock():
    """A limiter with a fake clock changes nothing for other users of asyncio-throttle."""
    import time as real_time

    from asyncio_throttle import Throttler, throttler as module

    RateGate(1, 1.0, clock=FakeTime().clock, sleep=FakeTime().sleep)
    assert module.time is real_time and Throttler.flush.__globals__["time"] is real_time

    async def go():
        plain = Throttler(rate_limit=1, period=0.05, retry_interval=0.001)
        started = real_time.monotonic()
        await plain.acquire()
        await plain.acquire()
        return real_time.monotonic() - started

    assert run(go()) >= 0.05


def test_concurrency_then_rate():
    t = FakeTime()

    async def go():
        limiter = ModelLimiter(concurrency=2, rate=(2, 1.0), clock=t.clock, sleep=t.sleep)
        starts = []

        async def one():
            async with limiter.slot():
                starts.append(t.now)
                await asyncio.sleep(0)

        await asyncio.gather(*(one() for _ in range(6)))
        return limiter, starts

    limiter, starts = run(go())
    assert limiter.max_in_flight <= 2 and limiter.started == 6
    assert all(sum(1 for s in starts if a <= s < a + 1.0) <= 2 for a in starts)


def test_invalid_limits():
    with pytest.raises(ValueError):
        ModelLimiter(concurrency=0)
    with pytest.raises(ValueError):
        ModelLimiter(rate=(0, 1.0))


def cfg(name="fast", source="/flows/app.fmflow", **kw):
    return ModelConfig(name=name, provider="replay", source=source, **kw)


def test_limiter_shared_across_concurrent_runs_in_one_loop():
    async def go():
        a, b = cfg(concurrency=3), cfg(concurrency=3)  # two runs, each evaluating the declaration
        assert limiter_for(a) is limiter_for(b)
        assert limiter_for(cfg("other", concurrency=3)) is not limiter_for(a)
        assert limiter_for(cfg(source="/x.fmflow", concurrency=3)) is not limiter_for(a)
        release, entered = asyncio.Event(), []

        async def flow_run(config, n):
            async def step():
                async with limiter_for(config).slot():
                    entered.append(1)
                    await release.wait()
            await asyncio.gather(*(step() for _ in range(n)))

        runs = [asyncio.create_task(flow_run(a, 10)), asyncio.create_task(flow_run(b, 10))]
        await settle()
        limiter = limiter_for(a)
        assert limiter.in_flight == 3 == len(entered)  # the two runs share 3 slots, not 3 each
        release.set()
        await asyncio.gather(*runs)
        assert (limiter.started, limiter.max_in_flight) == (20, 3)

    run(go())


def test_fresh_limiter_per_event_loop():
    config = cfg(concurrency=2)

    async def use():
        limiter = limiter_for(config)
        async with limiter.slot():
            pass
        return limiter

    first, second = run(use()), run(use())
    assert first is not second
    assert (first.started, second.started) == (1, 1)


def test_closed_loops_are_not_kept_by_their_limiters():
    """A limiter that has made a call wait holds its loop; a process that calls asyncio.run()
    again and again (flow.run() in a loop) must not keep every loop it ever made."""
    import gc
    import weakref

    from fmflow.runtime.limits import _LIMITERS

    config = cfg(concurrency=1)
    loops = []

    async def contend():
        loops.append(weakref.ref(asyncio.get_running_loop()))

        async def one():
            async with limiter_for(config).slot():
                await asyncio.sleep(0)
        await asyncio.gather(one(), one(), one())
        assert limiter_for(config).max_in_flight == 1

    for _ in range(10):
        run(contend())
    gc.collect()
    alive = [ref for ref in loops if ref() is not None]
    assert len(alive) <= 1, f"{len(alive)} closed loops kept"   # the last one goes when the next loop starts
    assert len([loop for loop in _LIMITERS if loop.is_closed()]) <= 1


def test_changed_limits_get_a_new_limiter():
    async def go():
        assert limiter_for(cfg(concurrency=2)) is not limiter_for(cfg(concurrency=4))
        assert limiter_for(cfg(concurrency=4)).concurrency == 4

    run(go())


def test_limiter_for_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        limiter_for(cfg())


def run(coro):
    return asyncio.run(coro)


# ------------------------------------------------------ shares of a cluster

@pytest.mark.parametrize("rate, concurrency, processes, shared_rate, shared_concurrency", [
    ((60, 60.0), 10, 1, (60, 60.0), 10),       # one process: unchanged
    ((60, 60.0), 10, 2, (30, 60.0), 5),
    ((5, 1.0), 3, 2, (2, 1.0), 1),             # rounded down: the total never passes the limit
    ((1, 1.0), 1, 2, (1, 2.0), 1),             # too small to split by count: split by time
    ((2, 1.0), None, 3, (1, 1.5), None),
    (None, 4, 8, None, 1),                     # never below one call at a time
])
def test_share_limits(rate, concurrency, processes, shared_rate, shared_concurrency):
    from fmflow.runtime.limits import share_limits

    config = ModelConfig(name="m", provider="replay", rate=rate, concurrency=concurrency)
    shared = share_limits(config, processes)
    assert (shared.rate, shared.concurrency) == (shared_rate, shared_concurrency)
    assert shared.name == "m" and shared.provider == "replay"


def test_a_run_takes_its_share_of_the_declared_limits(tmp_path):
    import fmflow
    from fmflow.runtime import RunOptions
    from fmflow.runtime.run import RunState

    path = tmp_path / "flow.fmflow"
    path.write_text('model m {\n  provider: "replay"\n  rate: 60/min\n  concurrency: 8\n}\n'
                    'flow go(q: str) -> str {\n  return q\n}\n')
    program = fmflow.load(path).program
    [decl] = program.models()
    shared = asyncio.run(RunState(program, RunOptions(limit_share=4)).model_config(decl))
    assert (shared.rate, shared.concurrency) == ((15, 60.0), 2)
    alone = asyncio.run(RunState(program, RunOptions()).model_config(decl))
    assert (alone.rate, alone.concurrency) == ((60, 60.0), 8)
