"""The on-disk response cache: model answers keyed by everything that shaped them.

A cache is an optimisation, never a dependency: a missing, locked, corrupted
or unreadable database file turns every lookup into a miss and every write
into a no-op (the cause kept in ``last_error``), so a run goes on exactly as
it would with ``--no-cache``.

One sqlite connection is shared by every thread and asyncio task of a process
and guarded by a lock; WAL journal mode lets other processes (``fmflow
batch`` workers) read while one writes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

# Bumped when the key payload or the stored value changes shape, so that old
# entries stop matching instead of being misread.
_KEY_VERSION = 1

DEFAULT_PATH = Path(".fmflow") / "cache" / "responses.sqlite3"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS responses ("
    " key TEXT PRIMARY KEY,"
    " value TEXT NOT NULL,"
    " created REAL NOT NULL)"
)


def cache_key(provider: str, model: str | None, settings: dict[str, Any],
              messages: list[dict[str, Any]], schema: dict[str, Any] | None) -> str:
    """sha256 hex of the canonical JSON of every input that shapes an answer.

    Canonical: sorted keys and fixed separators, so that dict order and
    whitespace never split one request into two keys. ``default=str`` keeps a
    stray non-JSON value (a Path, an enum) from failing the call; such values
    then key by their text.
    """
    payload = {
        "v": _KEY_VERSION,
        "provider": provider,
        "model": model,
        "settings": settings,
        "messages": messages,
        "schema": schema,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """A key → JSON-object store in one sqlite file; see the module docstring."""

    def __init__(self, path: str | Path = DEFAULT_PATH) -> None:
        self.path = Path(path)
        self.last_error: Exception | None = None
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = self._open()

    # -- opening ---------------------------------------------------------

    def _open(self) -> sqlite3.Connection | None:
        """Open (creating folders and table) or return None when unusable."""
        conn = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: the lock below serialises all use, so
            # sharing one connection between threads is safe. timeout: wait
            # for another process's write instead of failing at once.
            conn = sqlite3.connect(str(self.path), timeout=5.0,
                                   check_same_thread=False, isolation_level=None)
            # A file that is not a database fails on its first statement,
            # which is here, so a corrupted cache disables itself up front.
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable enough for a cache under WAL (a power cut can
            # lose the last answers, never corrupt the file) and much faster.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            return conn
        except (sqlite3.Error, OSError) as exc:
            self.last_error = exc
            if conn is not None:
                conn.close()
            return None

    @property
    def available(self) -> bool:
        """False once the file proved unusable (every get misses)."""
        return self._conn is not None

    # -- the store -------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or None on a miss or any failure."""
        with self._lock:
            if self._conn is None:
                return None
            try:
                row = self._conn.execute(
                    "SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                self.last_error = exc
                return None
        if row is None:
            return None
        try:
            value = json.loads(row[0])
        except ValueError as exc:       # a damaged row is a miss, not a crash
            self.last_error = exc
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store ``value`` under ``key``; never raises (see ``last_error``)."""
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            self.last_error = exc
            return
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
                    (key, text, time.time()))
            except sqlite3.Error as exc:
                self.last_error = exc

    # Synchronous on purpose: a primary-key lookup or insert in a local sqlite
    # file takes well under a millisecond, less than the thread hop that
    # asyncio.to_thread would add. The async names let the runtime await them
    # and leave room to move them to a thread should the cache ever go remote.
    async def aget(self, key: str) -> dict[str, Any] | None:
        return self.get(key)

    async def aput(self, key: str, value: dict[str, Any]) -> None:
        self.put(key, value)

    def __len__(self) -> int:
        with self._lock:
            if self._conn is None:
                return 0
            try:
                return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
            except sqlite3.Error as exc:
                self.last_error = exc
                return 0

    def clear(self) -> None:
        """Drop every entry; never raises."""
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.execute("DELETE FROM responses")
            except sqlite3.Error as exc:
                self.last_error = exc

    def close(self) -> None:
        """Close the connection; later calls behave as on an unusable file."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:
                self.last_error = exc

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
