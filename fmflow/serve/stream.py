"""`POST /flows/NAME/stream`: the final answer as server-sent events.

Events, each ``event: NAME`` + ``data: JSON``:

- ``start``   ``{"run_id"}`` — the run has begun;
- ``text``    ``{"text"}`` — the next piece of the final answer, as the model
  writes it (only a prompt returning ``str`` streams; a typed or cached
  answer comes whole in ``result``);
- ``restart`` ``{}`` — the model call broke off and is tried again: drop the
  text received so far;
- ``result``  ``{"output", "run_id"}`` — the run's output, always last on success;
- ``error``   ``{"error", "run_id"}`` — the run failed, always last on failure.

When the client goes away the run is cancelled (its trace records that).
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, AsyncIterator, Awaitable, Callable

from .runs import RunOutcome

_END = object()


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    # json.dumps writes no raw newline, so the data is one `data:` line.
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class TextListener:
    """The run's ``on_text``: queues each piece for the event stream, from any thread."""

    def __init__(self, queue: asyncio.Queue) -> None:
        self._queue = queue
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()

    def write(self, piece: str) -> None:
        self._put(("text", {"text": piece}))

    def restart(self) -> None:
        """Called by the runtime when a streamed call is tried again (see prompts._restart_stream)."""
        self._put(("restart", {}))

    def _put(self, item: Any) -> None:
        if threading.get_ident() == self._thread:
            self._queue.put_nowait(item)
        else:  # a provider streaming from a worker thread
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)


async def stream_run(run: Callable[[Callable[[str], None]], Awaitable[RunOutcome]],
                     run_id: str | None) -> AsyncIterator[bytes]:
    """The events of one run; ``run(on_text)`` runs the flow and gives its outcome."""
    queue: asyncio.Queue = asyncio.Queue()
    listener = TextListener(queue)
    task = asyncio.ensure_future(run(listener.write))
    task.add_done_callback(lambda _task: queue.put_nowait(_END))
    try:
        yield sse_event("start", {"run_id": run_id})
        while (item := await queue.get()) is not _END:
            yield sse_event(*item)
        outcome = task.result()
        yield sse_event("result" if outcome.ok else "error", outcome.body)
    finally:
        if not task.done():  # the client left: stop the run rather than pay for an answer nobody reads
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
