"""Where the grammar and the standard library live.

In a wheel they are packaged inside ``fmflow/`` (see pyproject.toml's
force-include); in a source checkout they sit at the repository's top level.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return candidates[-1]


def grammar_path() -> Path:
    return _first_existing(_PACKAGE / "grammar" / "fmflow.lark", _PACKAGE.parent / "grammar" / "fmflow.lark")


def stdlib_dir() -> Path:
    return _first_existing(_PACKAGE / "stdlib", _PACKAGE.parent / "stdlib")


def stdlib_module(name: str):
    """A Python module of the standard library (``stdlib/NAME.py``), imported once per process.

    The stdlib's modules import their helpers through this, and a user's own
    tool module reaches the stdlib's factories with it
    (``stdlib_module("std_tools").http_get_tool(allow=[…])``). The stdlib
    folder goes at the end of ``sys.path``, so it never shadows anything.
    """
    import importlib
    import sys

    folder = str(stdlib_dir())
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module(name)
