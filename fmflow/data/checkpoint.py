"""Checkpoints: which records are finished, committed together with the output's length.

The exactly-once rule: output lines are appended (and flushed, then fsynced)
*before* one SQLite transaction records both the records they hold and the
output's new length. After a crash at any instant, the checkpoint therefore
describes a prefix of the output file that holds exactly the finished
records; whatever lies beyond that length (a torn line, lines of records not
yet committed) is cut off on resume and those records run again.

Finished records are kept compactly: a watermark (every record up to that
line is finished) and the few finished lines above it, which the engine's
window keeps small.

The file is locked (flock) while a job holds it, so two processes can never
write one output at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from .records import DataError

FORMAT = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS done (line INTEGER PRIMARY KEY)",
)


@dataclass
class Progress:
    """What a commit records."""

    watermark: int = 0                                  # every record up to this line is finished
    done_above: list[int] = field(default_factory=list)  # finished lines above the watermark
    position: dict[str, int] = field(default_factory=dict)  # the sink's length per file
    totals: dict[str, Any] = field(default_factory=dict)    # counts carried over to a resumed job

    def skipper(self):
        """A test for lines finished in an earlier run (to skip them on resume)."""
        watermark, above = self.watermark, frozenset(self.done_above)
        if not above:
            return lambda line: line <= watermark
        return lambda line: line <= watermark or line in above


class Checkpoint:
    """One job's checkpoint file (SQLite): its identity, then its progress, commit by commit."""

    def __init__(self, path: str, lock, conn: sqlite3.Connection, identity: dict, progress: Progress) -> None:
        self.path = path
        self._lock = lock
        self._conn = conn
        self.identity = identity
        self.progress = progress

    @classmethod
    def create(cls, path: str, identity: dict[str, Any]) -> "Checkpoint":
        """A new checkpoint for a job starting from nothing (any older one is replaced)."""
        lock = _lock(path)
        lock.truncate(0)
        try:  # a journal left by a crash belongs to the old checkpoint, not to the new one
            os.remove(f"{path}-journal")
        except FileNotFoundError:
            pass
        conn = _connect(path)
        with conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO meta VALUES ('format', ?)", (str(FORMAT),))
            conn.execute("INSERT INTO meta VALUES ('identity', ?)", (json.dumps(identity),))
            conn.execute("INSERT INTO meta VALUES ('progress', ?)", (json.dumps(_progress_data(Progress())),))
        return cls(path, lock, conn, identity, Progress())

    @classmethod
    def load(cls, path: str) -> "Checkpoint":
        """The checkpoint of a job to resume; DataError when there is none or it is not ours."""
        if not os.path.isfile(path):
            raise DataError(f"there is no checkpoint to resume from ('{path}' does not exist)")
        lock = _lock(path)
        try:
            conn = _connect(path)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("format") != str(FORMAT):
                raise DataError(f"'{path}' is a checkpoint of another fmflow version (format "
                                f"{meta.get('format')}); start over with --overwrite")
            identity, data = json.loads(meta["identity"]), json.loads(meta["progress"])
            above = [row[0] for row in conn.execute("SELECT line FROM done ORDER BY line")]
        except (sqlite3.DatabaseError, KeyError, ValueError) as error:
            lock.close()
            raise DataError(f"'{path}' is not a readable checkpoint ({error}); start over with --overwrite") \
                from None
        progress = Progress(data["watermark"], above, data["position"], data["totals"])
        return cls(path, lock, conn, identity, progress)

    def commit(self, progress: Progress) -> None:
        """Record ``progress`` atomically (call only after the sink's data is synced)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'progress'", (json.dumps(_progress_data(progress)),))
            conn.execute("DELETE FROM done")
            conn.executemany("INSERT INTO done VALUES (?)", ((line,) for line in progress.done_above))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self.progress = progress

    def close(self) -> None:
        self._conn.close()
        self._lock.close()


def _progress_data(progress: Progress) -> dict[str, Any]:
    return {"watermark": progress.watermark, "position": progress.position, "totals": progress.totals}


def _connect(path: str) -> sqlite3.Connection:
    # check_same_thread=False: commits run in a worker thread, one at a time, so
    # the event loop keeps running records while the disk syncs.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _lock(path: str):
    """The checkpoint file, opened and locked for this process alone."""
    try:
        handle = open(path, "a+b")
    except OSError as error:
        raise DataError(f"cannot write the checkpoint '{path}': {error.strerror}") from None
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one writer per output is then the user's care
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DataError(f"another fmflow job is writing with the checkpoint '{path}'; wait for it to finish") \
            from None
    return handle
