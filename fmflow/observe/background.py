"""The trace writers' background thread, and the flushes at exit and on SIGTERM.

A run's spans are buffered in memory as they end (a list append on the
event loop) and written by one daemon thread per process, every
``INTERVAL`` seconds, in one write and one flush per trace; the end of a
run wakes it to write what is left and close the file at once, so the event
loop never waits on the disk (as OpenTelemetry's batch span processor
exports). A process killed outright (``kill -9``) loses at most the spans of
the last fraction of a second, and the file stays valid JSONL up to its last
complete line.

At interpreter exit every trace still open is written out. SIGTERM, when
nothing else handles it, writes every open trace, closes it with status
"terminated", and then ends the process as the default action would.
SIGINT needs nothing here: it cancels the run (runtime/interrupt.py), whose
trace is then closed as "interrupted".
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from typing import Protocol

INTERVAL = 0.2   # seconds between background writes: the most a kill -9 can lose
BACKLOG = 64     # closed traces waiting for the thread at most


class Buffered(Protocol):
    closed: bool

    def drain(self) -> None: ...
    def finish(self) -> None: ...
    def terminate(self) -> None: ...


class Background:
    """One daemon thread draining every registered trace writer."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._writers: dict[int, Buffered] = {}
        self._new_conditions()
        self._thread: threading.Thread | None = None
        self._hooks_installed = False
        self._at_terminate: list = []     # run on SIGTERM after the traces are written (exporters)
        self._closing: list[Buffered] = []   # closed traces to write and close now
        self._stopping = False

    def add(self, writer: Buffered) -> None:
        with self._wake:
            self._writers[id(writer)] = writer
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="fmflow-trace-writer", daemon=True)
                self._thread.start()
        if not self._hooks_installed:
            self._install_hooks()

    def remove(self, writer: Buffered) -> None:
        with self._wake:
            self._writers.pop(id(writer), None)

    def writers(self) -> list[Buffered]:
        with self._wake:
            return list(self._writers.values())

    def finish_soon(self, writer: Buffered) -> bool:
        """Hand a closed trace to the thread, which writes and closes it at once; False when
        the thread is not running (the caller then finishes it itself).

        When ``BACKLOG`` traces wait already, the caller waits for the thread to take
        them: runs that end faster than traces are written (runs that never wait give
        the thread no turn but the interpreter's switches) are held back, so memory stays
        bounded. Waiting, rather than writing in the caller's thread, leaves the
        interpreter lock to the writer: each of its system calls would otherwise wait for
        the busy caller to let go of the lock again (milliseconds a call).
        """
        with self._wake:
            while len(self._closing) >= BACKLOG:
                if self._thread is None or not self._thread.is_alive():
                    return False
                self._wake.notify()
                self._room.wait(1.0)
            self._closing.append(writer)
            self._wake.notify()
        return True

    def stop(self) -> None:
        """Write everything, then end the thread (a process that keeps one for good never calls it)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
        self.flush_all()

    def _run(self) -> None:
        drained = time.monotonic()
        while not self._stopping:
            with self._wake:
                if not self._closing and not self._stopping:
                    self._wake.wait(self.interval)
                closing = self._take_closing()
                due = time.monotonic() - drained >= self.interval
                writers = list(self._writers.values()) if due else []
            _write(closing)
            if due:   # the spans of runs still going, every interval
                drained = time.monotonic()
                _write(writers)

    def _take_closing(self) -> list[Buffered]:
        """The closed traces queued so far (the queue emptied, waiting callers woken); under the lock."""
        closing, self._closing = self._closing, []
        self._room.notify_all()
        return closing

    def flush_all(self) -> None:
        """Write every trace's buffer now, and finish the closed ones (complete files)."""
        with self._wake:
            closing = self._take_closing()
        _write(closing)
        _write(self.writers())

    def _at_exit(self) -> None:
        self.flush_all()

    # -- exit and signals --------------------------------------------------

    def _install_hooks(self) -> None:
        self._hooks_installed = True
        atexit.register(self._at_exit)
        if threading.current_thread() is not threading.main_thread():
            return   # signal handlers can only be set from the main thread
        try:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:   # a server's own handler stays
                signal.signal(signal.SIGTERM, self._on_sigterm)
        except (ValueError, OSError):
            pass

    def at_terminate(self, hook) -> None:
        """Run ``hook()`` on SIGTERM once every trace is written (atexit hooks do not run then)."""
        self._at_terminate.append(hook)

    def _on_sigterm(self, signum, _frame) -> None:
        for writer in self.writers():
            writer.terminate()
        for hook in self._at_terminate:
            try:
                hook()
            except Exception:   # the process is ending as asked, whatever a hook does
                pass
        # Then end as SIGTERM's default action would (exit status -15 to the parent).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def _forked(self) -> None:
        """In a forked child: the parent's traces are the parent's to write."""
        self._writers = {}
        self._closing = []
        self._new_conditions()
        self._thread = None

    def _new_conditions(self) -> None:
        lock = threading.RLock()   # re-entrant: a SIGTERM handler may come in while the loop holds it
        self._wake = threading.Condition(lock)   # the thread waits here for work
        self._room = threading.Condition(lock)   # callers wait here for room in the queue


def _write(writers: list[Buffered]) -> None:
    for writer in writers:
        try:
            if writer.closed:
                writer.finish()
            else:
                writer.drain()
        except Exception:   # a writer's own trouble must not stop the thread the others rely on
            pass


BACKGROUND = Background()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=BACKGROUND._forked)
