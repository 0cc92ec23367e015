"""Runs made one after another in one event loop (a batch's worker, a loop over ``flow.arun``)
leave nothing behind on the loop and let its other tasks run, even when no call ever waits."""

from __future__ import annotations

import asyncio

from flowfiles import load

INSTANT = '''
    model instant {
      provider: "replay"
      options: { responses: ["ok"], cycle: true }
    }

    prompt ask(q: str) -> str {
      model: instant
      template: "Q: {{ q }}"
    }

    flow fast(q: str) -> str {
      return ask(q: q)
    }
'''


def most_timers_held(flow, runs: int) -> int:
    """The most timers the loop held (asyncio's heap of scheduled handles, cancelled ones
    included) after each of ``runs`` runs made in a row."""
    async def main() -> int:
        loop = asyncio.get_running_loop()
        most = 0
        for i in range(runs):
            assert await flow.arun(q=f"question {i}") == "ok"
            most = max(most, len(loop._scheduled))
        return most

    return asyncio.run(main())


def test_runs_in_a_row_leave_no_timers_behind(tmp_path):
    # Every model call has a deadline. Calls with the same limit share one timer
    # (runtime/deadlines.py); any timer cancelled on the way is dropped on the loop's next turn.
    flow = load(tmp_path, INSTANT, cache=False, trace=False)
    small, large = most_timers_held(flow, 200), most_timers_held(flow, 800)
    # At most TURN_EVERY runs' timers wait for the loop's next turn.
    assert large <= small + 5, (small, large)
    assert large < 100, large


def test_runs_in_a_row_let_the_loops_other_tasks_run(tmp_path):
    from fmflow.runtime import TURN_EVERY

    flow = load(tmp_path, INSTANT, cache=False, trace=False)
    runs = 10 * TURN_EVERY

    async def main() -> int:
        turns = 0

        async def other_task() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(other_task())
        for i in range(runs):
            await flow.arun(q=f"question {i}")
        task.cancel()
        return turns

    assert asyncio.run(main()) >= runs // TURN_EVERY
