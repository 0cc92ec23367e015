"""E401: a prompt version recorded in fmflow.lock must not change silently."""

from __future__ import annotations

from .. import ast
from ..lockfile import LOCK_NAME, LockError, prompt_key, prompt_hash, read_lock
from .context import CheckContext


def check_lock(ctx: CheckContext) -> None:
    try:
        lock = read_lock(ctx.path)
    except LockError as error:
        ctx.diagnostics.add("E401", str(error), ctx.source.span(0, 0),
                            f"fix or delete {LOCK_NAME}, then run `fmflow lock`")
        return
    if lock is None:
        return
    for decl in ctx.module.decls:
        if not isinstance(decl, ast.PromptDecl):
            continue
        key = prompt_key(decl)
        recorded = lock.get(key)
        if recorded is None or recorded == prompt_hash(decl, ctx):
            continue
        newer = max(ctx.symbols.versions(decl.name) or [decl.effective_version]) + 1
        ctx.diagnostics.add(
            "E401", f"prompt '{key}' changed since {LOCK_NAME} was written, but kept its version number",
            decl.name_span,
            f"declare the change as a new version ({decl.name}@{newer}) or, if this version was never used, "
            "run `fmflow lock` again")
