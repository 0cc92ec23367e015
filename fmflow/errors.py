"""Exceptions of the public API. Each carries diagnostics or a clear cause."""

from __future__ import annotations


class FmflowError(Exception):
    """Base of every error fmflow raises on purpose."""


class FmflowCheckError(FmflowError):
    """A flow file has errors; ``diagnostics`` lists every one."""

    def __init__(self, diagnostics, sources=None) -> None:
        self.diagnostics = list(diagnostics)
        self.sources = sources or {}
        first = next((d for d in self.diagnostics if d.is_error), None)
        where = f"{first.span.path}:{first.span.line}:{first.span.col}: {first.message}" if first else ""
        count = sum(1 for d in self.diagnostics if d.is_error)
        super().__init__(f"{count} error{'s' if count != 1 else ''}; first: {where}")


class FmflowSyntaxError(FmflowCheckError):
    """The text does not parse."""
