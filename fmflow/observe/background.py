"""The trace writers' background thread, and the flushes at exit and on SIGTERM.

A run's spans are buffered in memory as they end (a list append on the
event loop) and written by one daemon thread per process, every
``INTERVAL`` seconds, in one write and one flush per trace; the end of a
run writes what is left on the spot. So a process killed outright
(``kill -9``) loses at most the spans of the last fraction of a second, and
the file stays valid JSONL up to its last complete line.

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
from typing import Protocol

INTERVAL = 0.2   # seconds between background writes: the most a kill -9 can lose


class Buffered(Protocol):
    def drain(self) -> None: ...
    def terminate(self) -> None: ...


class SpareFiles:
    """Empty trace files made ahead of time, off the event loop, in each folder that traces go to.

    Creating a file is the dearest part of a short run's trace (0.2-0.3 ms on
    this kind of disk, more than the run's other work); renaming a spare one
    costs a fifth of that. Spares are hidden (``.spare-<pid>-<n>``, never
    ``*.jsonl``), made at most ``LIMIT`` at a time per folder, and removed at exit;
    those of a process that was killed are removed by the next one.
    """

    LIMIT = 64
    IDLE = 50    # refills (10 s) without a trace in a folder before its spares go

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spares: dict[str, list[str]] = {}
        self._taken: dict[str, int] = {}      # per folder: spares taken (or missed) since the last refill
        self._idle: dict[str, int] = {}       # per folder: refills since one was last taken
        self._count = 0

    def take(self, folder: str) -> str | None:
        """A spare file's path in ``folder`` to rename, or None (then the caller creates its file)."""
        with self._lock:
            self._taken[folder] = self._taken.get(folder, 0) + 1
            spares = self._spares.get(folder)
            return spares.pop() if spares else None

    def refill(self) -> None:
        """Make as many spares as were taken since the last refill (at least 2), up to LIMIT; a
        folder unused for ``IDLE`` refills, or gone, is forgotten and its spares removed."""
        with self._lock:
            wanted = {folder: min(self.LIMIT, max(2, 2 * taken)) - len(self._spares.get(folder, []))
                      for folder, taken in self._taken.items()}
            for folder, taken in self._taken.items():
                self._idle[folder] = 0 if taken else self._idle.get(folder, 0) + 1
            self._taken = {folder: 0 for folder in self._taken}
            idle = [folder for folder, ticks in self._idle.items() if ticks >= self.IDLE]
        for folder in idle:
            self._forget(folder)
            wanted.pop(folder, None)
        for folder, count in wanted.items():
            if folder not in self._spares:
                _remove_stale_spares(folder)
            made = []
            for _ in range(max(0, count)):
                self._count += 1
                path = os.path.join(folder, f".spare-{os.getpid()}-{self._count}")
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                except FileNotFoundError:   # the folder is gone
                    self._forget(folder)
                    break
                except OSError:
                    break
                made.append(path)
            with self._lock:
                if folder in self._taken:
                    self._spares.setdefault(folder, []).extend(made)
                    made = []
            _remove(made)

    def _forget(self, folder: str) -> None:
        with self._lock:
            self._taken.pop(folder, None)
            self._idle.pop(folder, None)
            spares = self._spares.pop(folder, [])
        _remove(spares)

    def remove_all(self) -> None:
        with self._lock:
            spares, self._spares = self._spares, {}
        for paths in spares.values():
            _remove(paths)


def _remove(paths: list[str]) -> None:
    for path in paths:
        try:
            os.remove(path)
        except OSError:
            pass


def _remove_stale_spares(folder: str) -> None:
    """Spares left by processes that no longer run (killed before their exit hook)."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(".spare-")]
    except OSError:
        return
    for name in names:
        pid = name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class Background:
    """One daemon thread draining every registered trace writer."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._writers: dict[int, Buffered] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._hooks_installed = False
        self.spares = SpareFiles()
        self._at_terminate: list = []     # run on SIGTERM after the traces are written (exporters)

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

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait(self.interval)
                writers = list(self._writers.values())
            for writer in writers:
                writer.drain()
            self.spares.refill()

    def flush_all(self) -> None:
        for writer in self.writers():
            writer.drain()

    def _at_exit(self) -> None:
        self.flush_all()
        self.spares.remove_all()

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
        self.spares.remove_all()
        for hook in self._at_terminate:
            try:
                hook()
            except Exception:   # the process is ending as asked, whatever a hook does
                pass
        # Then end as SIGTERM's default action would (exit status -15 to the parent).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


    def _forked(self) -> None:
        """In a forked child: the parent's traces and spare files are the parent's to write."""
        self._writers = {}
        self._wake = threading.Condition()
        self._thread = None
        self.spares = SpareFiles()


BACKGROUND = Background()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=BACKGROUND._forked)
