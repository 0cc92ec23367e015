"""E002: imports resolve relative to the importing file, `std/…` from the stdlib."""

from __future__ import annotations

import os
import re

from ..resources import stdlib_dir
from ..source import SUFFIX, SourceError
from .context import CheckContext

_STD_NAME = re.compile(r"std/[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*(?:\.fmflow)?")


def resolve_import(written: str, importer: str) -> str:
    """The file an import names: ``std/x`` → stdlib/x.fmflow, else relative to the importer."""
    if written.startswith("std/"):
        name = written[len("std/"):]
        if not name.endswith(".fmflow"):
            name += ".fmflow"
        return str(stdlib_dir() / name)
    base = os.path.dirname(importer)
    return os.path.normpath(os.path.join(base, written))


def check_imports(ctx: CheckContext) -> None:
    loader = ctx.loader
    for imp in ctx.module.imports:
        if not _importable(imp.path):
            ctx.diagnostics.add("E002", f"cannot import '{imp.path}': an import names a {SUFFIX} file or a std/ module",
                                imp.span, f'e.g. import "./shared{SUFFIX}" or import "std/filters"')
            continue
        target = resolve_import(imp.path, ctx.path)
        if imp.path in ctx.imported:
            ctx.diagnostics.add("E102", f"'{imp.path}' is imported twice", imp.span, "remove this import")
            continue
        if loader.is_loading(target):
            chain = " → ".join(os.path.basename(p) for p in [*loader.chain_to(target), target])
            ctx.diagnostics.add("E002", f"import cycle: {chain}", imp.span,
                                "move the shared declarations into a file that both can import")
            # Its names are still visible, so the cycle is the only error reported.
            ctx.imported[imp.path] = (target, loader.context(target).module)
            continue
        if not os.path.lexists(target):
            hint = "standard library modules: " + ", ".join(sorted(_stdlib_modules())) \
                if imp.path.startswith("std/") else "paths are relative to the importing file"
            ctx.diagnostics.add("E002", f"cannot find import '{imp.path}' (looked for {target})", imp.span, hint)
            continue
        try:
            imported = loader.load(target, report_unused=False)
        except SourceError as error:  # the reason only: what a file that is not a flow holds is never shown
            ctx.diagnostics.add("E002", f"cannot read import '{imp.path}': {error.reason}", imp.span)
            continue
        ctx.imported[imp.path] = (target, imported.module)


def _importable(written: str) -> bool:
    """``std/NAME`` (no way out of the standard library) or a path to a ``.fmflow`` file."""
    if written.startswith("std/"):
        return _STD_NAME.fullmatch(written) is not None
    return written.endswith(SUFFIX)


def _stdlib_modules() -> list[str]:
    return ["std/" + p.stem for p in stdlib_dir().glob("*.fmflow")]
