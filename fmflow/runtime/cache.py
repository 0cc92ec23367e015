"""The on-disk response cache: model answers keyed by everything that shaped them.

A cache is an optimisation, never a dependency: a missing, locked or
unreadable database file turns every lookup into a miss and every write into
a no-op (the cause kept in ``last_error``), so a run goes on exactly as it
would with ``--no-cache``. A damaged file (truncated, overwritten, a table of
another shape) is moved aside to ``<file>.broken`` and a new cache started;
a damaged entry (not JSON, or not what the reader expects) is deleted and
read as a miss. Either is said once per cache on stderr, naming the file.

Values are masked (``fmflow.secrets``) and their text made valid Unicode
before they are stored: the cache holds no secret a run knew.

One sqlite connection is shared by every thread and asyncio task of a process
and guarded by a lock; WAL journal mode lets other processes (``fmflow
batch`` workers) read while one writes. ``shared_cache(path)`` opens each
file once per process, on the first call that can use it: a run whose calls
never reach the cache (tools, models with `cache: false`) opens nothing.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..secrets import SecretMasker
from .boundary import clean_text

# Bumped when the key payload or the stored value changes shape, so that old
# entries stop matching instead of being misread.
_KEY_VERSION = 1

DEFAULT_PATH = Path(".fmflow") / "cache" / "responses.sqlite3"

_COLUMNS = ["key", "value", "created"]
# sqlite's result codes for a file that is not (or no longer) a sound database.
_DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
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
    # surrogatepass: a lone surrogate in a message keys the request instead of failing it.
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def model_settings(config) -> dict[str, Any]:
    """The settings of a ModelConfig that shape its answers, as ``cache_key`` takes them."""
    return {"temperature": config.temperature, "max_tokens": config.max_tokens, "base_url": config.base_url,
            "options": config.options}


class ResponseCache:
    """A key → JSON-object store in one sqlite file; see the module docstring."""

    def __init__(self, path: str | Path = DEFAULT_PATH, masker: SecretMasker | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.last_error: Exception | None = None
        self.masker = masker or SecretMasker()   # URL credentials are masked even with no run secrets
        self._warn = warn or _warn_on_stderr
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self.closed = False
        self._conn: sqlite3.Connection | None = self._open()

    # -- opening ---------------------------------------------------------

    def _open(self, rebuilt: bool = False) -> sqlite3.Connection | None:
        """Open (creating folders and table) or return None when unusable; a damaged
        file is moved aside and opened anew, once."""
        conn = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: the lock below serialises all use, so
            # sharing one connection between threads is safe. timeout: wait
            # for another process's write instead of failing at once.
            conn = sqlite3.connect(str(self.path), timeout=5.0,
                                   check_same_thread=False, isolation_level=None)
            # A file that is not a database fails on its first statement, which is here.
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable enough for a cache under WAL (a power cut can
            # lose the last answers, never corrupt the file) and much faster.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            columns = [row[1] for row in conn.execute("PRAGMA table_info(responses)")]
            if columns != _COLUMNS:
                raise _Damaged(f"its table has columns {columns}, not {_COLUMNS}")
            return conn
        except (sqlite3.Error, OSError, _Damaged) as exc:
            self.last_error = exc
            if conn is not None:
                conn.close()
            if not rebuilt and _is_damage(exc) and self._move_aside(exc):
                return self._open(rebuilt=True)
            return None

    def _move_aside(self, cause: Exception) -> bool:
        """Move the damaged file (and its WAL files) to ``<file>.broken``; True when done."""
        broken = self.path.with_name(self.path.name + ".broken")
        try:
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    os.replace(source, f"{broken}{suffix}")
        except OSError as exc:
            self.last_error = exc
            return False
        self._warn_once("file", f"the response cache {self.path} is damaged ({cause}); "
                                f"moved it to {broken} and started a new one")
        return True

    def _damaged(self, exc: Exception) -> None:
        """A statement failed: when the file proved damaged, move it aside and start a new
        one (the lock is held); anything else (a busy file) is only recorded."""
        self.last_error = exc
        if not _is_damage(exc):
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if self._move_aside(exc):
            self._conn = self._open(rebuilt=True)

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            self._warn(message)

    @property
    def available(self) -> bool:
        """False once the file proved unusable (every get misses)."""
        return self._conn is not None

    # -- the store -------------------------------------------------------

    def get(self, key: str, accept: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
        """The stored value, or None on a miss or any failure. A value that is not a
        JSON object, or that ``accept`` refuses, is deleted and read as a miss."""
        with self._lock:
            if self._conn is None:
                return None
            try:
                row = self._conn.execute(
                    "SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                self._damaged(exc)
                return None
        if row is None:
            return None
        try:
            value = json.loads(row[0]) if isinstance(row[0], str) else None
        except ValueError as exc:
            self.last_error = exc
            value = None
        if isinstance(value, dict) and (accept is None or accept(value)):
            return value
        self._drop(key)
        return None

    def _drop(self, key: str) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.execute("DELETE FROM responses WHERE key = ?", (key,))
            except sqlite3.Error as exc:
                self._damaged(exc)
        self._warn_once("entry", f"the response cache {self.path} held a damaged entry; "
                                 "it was deleted and the call made again")

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store ``value`` (masked) under ``key``; never raises (see ``last_error``)."""
        try:
            text = clean_text(json.dumps(self.masker.mask_data(value), ensure_ascii=False,
                                         separators=(",", ":"), allow_nan=False))
        except (TypeError, ValueError, RecursionError) as exc:
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
                self._damaged(exc)

    # Synchronous on purpose: a primary-key lookup or insert in a local sqlite
    # file takes well under a millisecond, less than the thread hop that
    # asyncio.to_thread would add. The async names let the runtime await them
    # and leave room to move them to a thread should the cache ever go remote.
    async def aget(self, key: str, accept: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
        return self.get(key, accept)

    async def aput(self, key: str, value: dict[str, Any]) -> None:
        self.put(key, value)

    def __len__(self) -> int:
        with self._lock:
            if self._conn is None:
                return 0
            try:
                return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
            except sqlite3.Error as exc:
                self._damaged(exc)
                return 0

    def clear(self) -> None:
        """Drop every entry; never raises."""
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.execute("DELETE FROM responses")
            except sqlite3.Error as exc:
                self._damaged(exc)

    def close(self) -> None:
        """Close the connection; later calls behave as on an unusable file."""
        with self._lock:
            conn, self._conn = self._conn, None
            self.closed = True
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:
                self.last_error = exc

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# The caches this process opened, by absolute path (most recently used last).
_SHARED: dict[str, ResponseCache] = {}
_SHARED_LOCK = threading.Lock()
_SHARED_LIMIT = 16     # open files kept; the least recently used one is closed beyond that


def shared_cache(path: str | Path) -> ResponseCache:
    """The process's open cache of ``path``, opened on first use and kept for later runs.

    Opening a cache (connect, WAL and schema statements) costs about a
    millisecond, more than a whole run of quick steps.
    """
    key = os.path.abspath(path)
    with _SHARED_LOCK:
        cache = _SHARED.pop(key, None)
        if cache is None or cache.closed:   # closed by its user: open it again
            cache = ResponseCache(key)
        _SHARED[key] = cache
        while len(_SHARED) > _SHARED_LIMIT:
            _SHARED.pop(next(iter(_SHARED))).close()
    return cache


def _close_shared() -> None:
    with _SHARED_LOCK:
        caches = list(_SHARED.values())
        _SHARED.clear()
    for cache in caches:
        cache.close()


atexit.register(_close_shared)


class _Damaged(Exception):
    """The file is a database, but not one of ours."""


def _is_damage(exc: Exception) -> bool:
    return isinstance(exc, _Damaged) or getattr(exc, "sqlite_errorname", None) in _DAMAGED


def _warn_on_stderr(message: str) -> None:
    print(f"fmflow: warning: {message}", file=sys.stderr)
