"""Checks a file and, through its imports, the files it depends on."""

from __future__ import annotations

import os

from ..diagnostics import Diagnostic, Diagnostics
from ..parser import collector_paused, parse_file, parse_source
from ..source import SourceFile
from .context import CheckContext


class ModuleLoader:
    """One per check run: every file is parsed and checked once."""

    def __init__(self, pins: dict[str, int] | None = None, overrides: dict[str, str] | None = None) -> None:
        self.pins = dict(pins or {})
        # Unsaved editor buffers: absolute path → text (used by the language server).
        self.overrides = {os.path.abspath(k): v for k, v in (overrides or {}).items()}
        self.contexts: dict[str, CheckContext] = {}
        self.field_cache: dict[int, dict] = {}
        self._loading: list[str] = []

    @staticmethod
    def _key(path: str) -> str:
        return os.path.abspath(path)

    def load(self, path: str, text: str | None = None, report_unused: bool = True) -> CheckContext:
        """The checked file at ``path`` (or ``text`` checked as that file).

        Raises SourceError when the file cannot be read (see fmflow.source).
        """
        from . import run_passes

        key = self._key(path)
        if key in self.contexts:
            return self.contexts[key]
        if text is None:
            text = self.overrides.get(key)
        # The parser and the passes allocate much and free little: one pause for both, so
        # that the collector then looks at the new objects once, not after each phase.
        with collector_paused():
            diagnostics = Diagnostics()
            if text is None:
                source, module = parse_file(path, diagnostics)
            else:
                source = SourceFile(path, text)
                module = parse_source(source, diagnostics)
            ctx = CheckContext(source, module, diagnostics, pins=self.pins, report_unused=report_unused,
                               loader=self)
            self.contexts[key] = ctx
            self._loading.append(key)
            try:
                run_passes(ctx)
            finally:
                self._loading.pop()
        return ctx

    def is_loading(self, path: str) -> bool:
        return self._key(path) in self._loading

    def chain_to(self, path: str) -> list[str]:
        """The files being loaded, from ``path`` to the innermost."""
        key = self._key(path)
        chain = self._loading[self._loading.index(key):] if key in self._loading else []
        return chain

    def context(self, path: str) -> CheckContext | None:
        return self.contexts.get(self._key(path))

    def release(self) -> None:
        """Forget every checked module. Each context refers back to this loader, so without
        this a loader nobody uses any more is freed only by the cyclic garbage collector."""
        self.contexts.clear()
        self.field_cache.clear()

    def sources(self) -> dict[str, SourceFile]:
        return {ctx.path: ctx.source for ctx in self.contexts.values()}

    def diagnostics(self) -> list[Diagnostic]:
        collected = Diagnostics()
        for ctx in self.contexts.values():
            collected.extend(ctx.diagnostics.items)
        return collected.sorted()
