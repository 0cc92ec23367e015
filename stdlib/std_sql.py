"""std/tools' sql_query: one read-only, parameterised query on an allowed SQLite database.

- **Which databases**: files named in ``FMFLOW_SQL_ALLOW`` (database files or
  folders holding them, separated by ``os.pathsep``), or the one file of a
  ``sql_query_tool(db)``. Nothing is allowed by default.
- **Read-only, three times over**: the file is opened with the ``mode=ro``
  URI (SQLite itself refuses to write), ``PRAGMA query_only`` is set, and an
  authorizer lets a statement only read tables and call functions: INSERT,
  UPDATE, DELETE, CREATE, DROP, ATTACH, DETACH, PRAGMA, transactions and
  the rest are refused while the statement is prepared, before it runs.
- **One statement**: a second statement after a ``;`` is refused.
- **Parameters** are bound, never pasted into the text: a list for ``?``
  placeholders, an object for ``:name`` ones, or null; values are text,
  numbers, booleans or null.
- **Limits**: ``max_rows`` (1,000) rows and ``max_bytes`` (1 MB) of JSON
  at most (the answer then says ``truncated: true``), and ``timeout`` (5 s):
  a longer query is interrupted.

The answer is ``{"columns": [...], "rows": [[...], ...], "truncated": bool}``;
blobs come back as hexadecimal text.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALLOW_ENV = "FMFLOW_SQL_ALLOW"

_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                 getattr(sqlite3, "SQLITE_RECURSIVE", 33)}


class SqlRefused(ValueError):
    pass


@dataclass(frozen=True)
class Limits:
    max_rows: int = 1000
    timeout: float = 5.0
    max_bytes: int = 1_000_000


def allowed_from_env() -> list[str]:
    return [os.path.realpath(p) for p in os.environ.get(ALLOW_ENV, "").split(os.pathsep) if p.strip()]


def allowed_database(db: str, allowed: list[str]) -> str:
    """The real path of ``db`` when it is an allowed file or lies in an allowed folder."""
    if not allowed:
        raise SqlRefused(f"sql_query: no database is allowed; set {ALLOW_ENV} to a database file or folder")
    if not isinstance(db, str) or not db.strip() or "\x00" in db:
        raise SqlRefused(f"sql_query: not a database path: {db!r}")
    real = os.path.realpath(db)
    for entry in allowed:
        if real == entry or (os.path.isdir(entry) and real.startswith(entry.rstrip(os.sep) + os.sep)):
            return real
    raise SqlRefused(f"sql_query: {db!r} is not an allowed database ({ALLOW_ENV}: {os.pathsep.join(allowed)})")


def run(path: str, query: str, params: Any, limits: Limits) -> dict:
    if not os.path.isfile(path):
        raise SqlRefused(f"sql_query: no database file at {path}")
    if not isinstance(query, str) or not query.strip():
        raise SqlRefused("sql_query: the query is empty")
    bound = _parameters(params)
    connection = _open(path, limits)
    try:
        try:
            cursor = connection.execute(query, bound)
        except (sqlite3.Warning, sqlite3.ProgrammingError) as error:
            raise SqlRefused(f"sql_query: {_reason(error)}") from None
        except sqlite3.DatabaseError as error:
            raise SqlRefused(f"sql_query: {_reason(error)}") from None
        return _collect(cursor, limits)
    except sqlite3.OperationalError as error:
        raise SqlRefused(f"sql_query: {_reason(error)}") from None
    finally:
        connection.close()


def _open(path: str, limits: Limits) -> sqlite3.Connection:
    uri = f"{Path(path).as_uri()}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=min(limits.timeout, 5.0), check_same_thread=False)
    except sqlite3.Error as error:
        raise SqlRefused(f"sql_query: cannot open {path} read-only: {error}") from None
    connection.execute("PRAGMA query_only = ON")
    if hasattr(connection, "setlimit"):
        connection.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    connection.set_authorizer(_authorize)
    deadline = time.monotonic() + limits.timeout
    connection.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
    return connection


def _authorize(action: int, _arg1, _arg2, _database, _trigger) -> int:
    return sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY


def _parameters(params: Any):
    if params is None:
        return ()
    values = params.values() if isinstance(params, dict) else params if isinstance(params, list) else None
    if values is None:
        raise SqlRefused(f"sql_query: params must be a list (for ?), an object (for :name) or null, "
                         f"not {type(params).__name__}")
    for value in values:
        if not (value is None or isinstance(value, (str, int, float, bool))):
            raise SqlRefused(f"sql_query: a parameter must be text, a number, a boolean or null, "
                             f"not {type(value).__name__}")
    return params


def _collect(cursor: sqlite3.Cursor, limits: Limits) -> dict:
    columns = [d[0] for d in cursor.description or []]
    rows: list[list[Any]] = []
    size = len(json.dumps(columns))
    truncated = False
    for row in cursor:
        values = [_jsonable(value) for value in row]
        size += len(json.dumps(values, ensure_ascii=False, default=str)) + 1
        if len(rows) >= limits.max_rows or size > limits.max_bytes:
            truncated = True
            break
        rows.append(values)
    return {"columns": columns, "rows": rows, "truncated": truncated}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON holds no infinity
    return value


def _reason(error: Exception) -> str:
    text = str(error)
    if "not authorized" in text:
        return "the query may only read (SELECT); writes, ATTACH, PRAGMA and transactions are refused"
    if "interrupted" in text:
        return "the query ran too long and was stopped"
    if "one statement at a time" in text:
        return "one statement at a time: remove everything after the first ';'"
    if "readonly" in text or "read-only" in text:
        return "the database is opened read-only"
    return text
