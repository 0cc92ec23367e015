"""One writer per store at a time, and a note of writes that did not finish.

Chroma keeps part of a collection (its vector index) in files that each
process loads, changes in memory and writes back whole; two processes
writing to one store at once overwrite each other's work and leave entries
without vectors or with wrong neighbours. So every write to a store
(`fmflow index`, `--verify`) holds an OS file lock (fcntl `flock`, `msvcrt`
on Windows) on `fmflow-index.lock` in the store folder, taken before the
store is opened. The lock file says who holds it (process, host, command,
since when) so that a run that has to wait can say for whom; the OS releases
the lock when its holder exits, however it exits.

A write that starts on a collection leaves a marker file
(`fmflow-unfinished.NAME`) until it ends well; a process killed half-way
leaves it behind, and the next writer verifies that collection first
(fmflow/retrieval/verify.py).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from .defaults import DEFAULT_LOCK_TIMEOUT
from .store import StoreError, StoreFailure, prepare_store_folder, shown_folder

LOCK_NAME = "fmflow-index.lock"
UNFINISHED_PREFIX = "fmflow-unfinished."
_POLL = 0.2

try:  # POSIX
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


class StoreBusy(StoreFailure):
    """Another process kept the store's lock for longer than the wait allowed."""


class HeldLock:
    """The lock of one store, held: what the previous writers left unfinished, and marking it."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def unfinished(self) -> list[str]:
        """Collections whose last write did not end well (sorted)."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        return sorted(name[len(UNFINISHED_PREFIX):] for name in names if name.startswith(UNFINISHED_PREFIX))

    def begin(self, collection: str) -> None:
        """Before the first write to `collection`: a marker that stays if this process dies."""
        path = os.path.join(self.folder, UNFINISHED_PREFIX + collection)
        try:
            with open(path, "w", encoding="utf-8") as marker:
                marker.write(f"{os.getpid()} {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        except OSError as error:
            raise _write_error(self.folder, error) from None

    def finish(self, collection: str) -> None:
        try:
            os.remove(os.path.join(self.folder, UNFINISHED_PREFIX + collection))
        except FileNotFoundError:
            pass


@contextmanager
def store_lock(folder: str, holder: str, timeout: float = DEFAULT_LOCK_TIMEOUT,
               notify: Callable[[str], None] | None = None) -> Iterator[HeldLock]:
    """Hold the store's write lock (making the store folder if needed) for the `with` block.

    `holder` describes this process to the others (e.g. the command line).
    When another process holds the lock, `notify` is told who, once, and the
    lock is tried again until `timeout` seconds have passed; then StoreBusy.
    """
    prepare_store_folder(folder)
    path = os.path.join(folder, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise _write_error(folder, error) from None
    try:
        _acquire(fd, folder, timeout, notify)
        try:
            _describe_self(fd, holder)
            yield HeldLock(folder)
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _acquire(fd: int, folder: str, timeout: float, notify: Callable[[str], None] | None) -> None:
    if _try_lock(fd):
        return
    who = _holder(fd)
    if notify:
        notify(f"the store {shown_folder(folder)} is in use by {who}; waiting up to {timeout:g} s (--lock-timeout)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))
        if _try_lock(fd):
            return
    short = who.split(" (")[0]
    raise StoreBusy(f"the store {shown_folder(folder)} is still in use by {short} after {timeout:g} s; try again "
                    f"when it is done, or wait longer with --lock-timeout SECONDS")


def _describe_self(fd: int, holder: str) -> None:
    import socket

    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "holder": holder,
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode("utf-8")
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, text)
    except OSError:
        pass  # who holds the lock is only said to waiting runs; the lock itself is what matters


def _holder(fd: int) -> str:
    """'process 123 (fmflow index docs …, since 12:00:01)' from the lock file, as far as it can be read."""
    import socket

    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 65536).decode("utf-8"))
        where = "" if info.get("host") == socket.gethostname() else f" on {info.get('host')}"
        since = str(info.get("since", "")).split(" ")[-1]
        return f"process {int(info['pid'])}{where} ({info.get('holder') or 'fmflow'}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another fmflow process"


def _write_error(folder: str, error: OSError) -> StoreError:
    return StoreFailure(f"cannot write to the store {shown_folder(folder)}: {error.strerror or error}")
