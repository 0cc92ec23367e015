"""Implementations of std/tools (declared, and documented, in tools.fmflow beside this file).

Every tool is safe to hand to a model: what it may reach is set by whoever
runs the flow (environment variables) or writes a tool module (the
``*_tool`` factories), never by the arguments a model chooses. A refusal is
an error that says why, which an agent reads as the tool's answer.

A tool module of your own uses a factory through ``fmflow.resources``::

    from fmflow.resources import stdlib_module
    tools = stdlib_module("std_tools")
    fetch = tools.http_get_tool(allow=["docs.python.org"])
    orders = tools.sql_query_tool("data/shop.db")
    notes = tools.read_file_tool("notes/")

and declares them: ``tool fetch(url: str) -> str = python("my_tools:fetch")``.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Callable

from fmflow.resources import stdlib_module

_calc = stdlib_module("std_calculator")
_files = stdlib_module("std_files")
_http = stdlib_module("std_http")
_sql = stdlib_module("std_sql")

FILES_ENV = _files.ROOT_ENV
SQL_ENV = _sql.ALLOW_ENV
HTTP_ENV = _http.ALLOW_ENV


def calculator(expression: str) -> Any:
    return _calc.evaluate(expression)


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def http_get(url: str) -> str:
    return _http.fetch(url, _http.policy_from_env())


def http_get_tool(allow: list[str], *, allow_private: bool = False, max_bytes: int = 1_000_000,
                  timeout: float = 10.0, max_redirects: int = 5) -> Callable[[str], str]:
    """An http_get limited to the hosts in ``allow`` (same forms as FMFLOW_HTTP_ALLOW)."""
    if isinstance(allow, str):
        raise TypeError("http_get_tool: allow is a list of hosts, e.g. ['docs.python.org']")
    policy = _http.Policy(allow=tuple(allow), allow_private=allow_private, max_bytes=max_bytes, timeout=timeout,
                          max_redirects=max_redirects)

    def http_get(url: str) -> str:
        return _http.fetch(url, policy)

    return http_get


def sql_query(db: str, query: str, params: Any) -> dict:
    return _sql.run(_sql.allowed_database(db, _sql.allowed_from_env()), query, params, _sql.Limits())


def sql_query_tool(db: str | os.PathLike, *, max_rows: int = 1000, timeout: float = 5.0,
                   max_bytes: int = 1_000_000) -> Callable[[str, Any], dict]:
    """A sql_query on one database file, fixed here: the caller gives only the query and its parameters."""
    path = os.path.realpath(db)
    limits = _sql.Limits(max_rows=max_rows, timeout=timeout, max_bytes=max_bytes)

    def sql_query(query: str, params: Any) -> dict:
        return _sql.run(path, query, params, limits)

    return sql_query


def read_file(path: str) -> str:
    return _files.read(path, _files.roots_from_env(), _files.MAX_BYTES)


def read_file_tool(root: str | os.PathLike | list, *, max_bytes: int = _files.MAX_BYTES) -> Callable[[str], str]:
    """A read_file confined to ``root`` (a folder, or a list of folders)."""
    roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    resolved = [os.path.realpath(r) for r in roots]

    def read_file(path: str) -> str:
        return _files.read(path, resolved, max_bytes)

    return read_file
