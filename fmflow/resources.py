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
