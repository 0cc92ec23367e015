"""The Python API behind the CLI, the language server and the runtime."""

from __future__ import annotations

from pathlib import Path

from . import ast
from .checks.context import CheckContext
from .checks.loader import ModuleLoader
from .diagnostics import Diagnostic
from .errors import FmflowSyntaxError
from .parser import parse_text


def parse(text: str, path: str = "<string>") -> ast.Module:
    """Parse text into a Module, raising FmflowSyntaxError with every syntax error."""
    module, diagnostics = parse_text(text, path)
    if any(d.is_error for d in diagnostics):
        raise FmflowSyntaxError(diagnostics)
    return module


def load_program(path: str | Path, text: str | None = None, pins: dict[str, int] | None = None,
                 overrides: dict[str, str] | None = None) -> tuple[ModuleLoader, CheckContext | None]:
    """Check a file and its imports; the loader holds every checked module."""
    loader = ModuleLoader(pins=pins, overrides=overrides)
    return loader, loader.load(str(path), text=text)


def check(path: str | Path, pins: dict[str, int] | None = None) -> list[Diagnostic]:
    """Diagnostics of a file and the files it imports, sorted by file and position."""
    loader, ctx = load_program(path, pins=pins)
    if ctx is None:
        raise FileNotFoundError(f"cannot read {path}")
    return loader.diagnostics()


def check_text(text: str, path: str = "<string>", pins: dict[str, int] | None = None) -> list[Diagnostic]:
    """Diagnostics of ``text`` checked as if it were the file at ``path``."""
    loader, _ctx = load_program(path, text=text, pins=pins)
    return loader.diagnostics()
