"""The checker's diagnostics as LSP diagnostics, grouped by the file they are in."""

from __future__ import annotations

import os

from lsprotocol import types

from ..diagnostics import Diagnostic
from ..resources import stdlib_dir
from .analysis import Analysis, path_to_uri
from .positions import span_range

SOURCE = "fmflow"


def file_diagnostics(analysis: Analysis, path: str) -> dict[str, list[types.Diagnostic]]:
    """LSP diagnostics of ``path`` and of the files it imports, by path.

    Every file that was checked for ``path`` gets an entry (an empty list
    clears what the editor showed before).
    """
    ctx = analysis.context(path)
    if ctx is None:
        return {path: []}
    by_path: dict[str, list[types.Diagnostic]] = {path: []}
    std = str(stdlib_dir())
    for key in [path, *sorted(analysis.imported_paths(path))]:
        loaded = analysis.loader.context(key)
        if loaded is None or key.startswith(std):
            continue
        # A file's diagnostics all point into that file (an import's problem is on its import line).
        by_path[key] = [to_lsp(d, loaded.source, _related(analysis, loaded, d)) for d in loaded.diagnostics.sorted()]
    return by_path


def to_lsp(d: Diagnostic, source, related: list | None = None) -> types.Diagnostic:
    severity = types.DiagnosticSeverity.Error if d.is_error else types.DiagnosticSeverity.Warning
    message = d.message if not d.help else f"{d.message}\nhelp: {d.help}"
    tags = [types.DiagnosticTag.Unnecessary] if d.code == "W501" else None
    return types.Diagnostic(range=span_range(source, d.span), message=message, severity=severity,
                            code=d.code, source=SOURCE, tags=tags, related_information=related or None)


def _related(analysis: Analysis, ctx, d: Diagnostic) -> list[types.DiagnosticRelatedInformation]:
    """For an import's diagnostic: where the imported file is, and the imports that close a cycle."""
    if d.code != "E002":
        return []
    imp = next((i for i in ctx.module.imports if i.span == d.span), None)
    if imp is None:
        return []
    from ..checks.imports import resolve_import

    target = resolve_import(imp.path, ctx.path)
    other = analysis.loader.context(target)
    if other is None:
        return []
    related = [types.DiagnosticRelatedInformation(
        location=types.Location(uri=path_to_uri(target), range=span_range(other.source, other.source.span(0, 0))),
        message=f"'{imp.path}' is {target}")]
    for back in other.module.imports:
        if os.path.abspath(resolve_import(back.path, target)) == os.path.abspath(ctx.path):
            related.append(types.DiagnosticRelatedInformation(
                location=types.Location(uri=path_to_uri(target), range=span_range(other.source, back.span)),
                message="imported back here"))
    return related

