"""Ctrl-C during a run: one press ends it cleanly.

The first SIGINT cancels the run's task with the message ``INTERRUPTED``:
every call in flight is cancelled, the trace is closed with status
"interrupted", and KeyboardInterrupt reaches the caller (``fmflow run``
exits 130 with one line). Sync tools run on daemon threads (tools.py), so a
tool sleeping in a thread does not hold the process. A second press while
the run winds down raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any, Coroutine

INTERRUPTED = "interrupted"


def run_interruptibly(coro: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run(coro)``, with Ctrl-C cancelling the run as described above."""
    with asyncio.Runner() as runner:
        loop = runner.get_loop()
        task = loop.create_task(coro)
        presses = 0

        def on_sigint(_signum, _frame) -> None:
            nonlocal presses
            presses += 1
            if presses == 1 and not task.done():
                loop.call_soon_threadsafe(task.cancel, INTERRUPTED)
                return
            raise KeyboardInterrupt

        handling = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, on_sigint) if handling else None
        try:
            return loop.run_until_complete(task)
        except BaseException:
            if presses:   # however the run ended once Ctrl-C was pressed, the user stopped it
                raise KeyboardInterrupt from None
            raise
        finally:
            if handling:
                signal.signal(signal.SIGINT, previous)
