"""E401: a prompt version recorded in fmflow.lock must not change silently.

The lock holds two hashes per version (see fmflow.lockfile), so the message
says what changed: the prompt's own text, its model, or both. An entry of an
older lock (one hash of everything) is compared with the hash that lock used,
and when it differs the message says the older lock cannot tell which.
"""

from __future__ import annotations

from .. import ast
from ..lockfile import LOCK_NAME, LockError, PromptHashes, legacy_prompt_hash, prompt_hashes, prompt_key, read_lock
from .context import CheckContext

_PARTS = {"text": "its text is its template, system, history, parameters, output type, checks and on_fail",
          "model": "its model is its provider, name and temperature"}


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
        changed = _what_changed(decl, ctx, recorded) if recorded is not None else None
        if changed is None:
            continue
        newer = max(ctx.symbols.versions(decl.name) or [decl.effective_version]) + 1
        advice = (f"declare the change as a new version ({decl.name}@{newer}) or, if this version was never used, "
                  "run `fmflow lock` again")
        if not changed:  # an entry of format 1
            ctx.diagnostics.add(
                "E401", f"prompt '{key}' changed since {LOCK_NAME} was written, but kept its version number",
                decl.name_span, f"{advice} ({LOCK_NAME} is from an older fmflow: it cannot tell whether the "
                "text or the model changed)")
            continue
        ctx.diagnostics.add(
            "E401", f"the {' and the '.join(changed)} of prompt '{key}' changed since {LOCK_NAME} was written, "
            "but it kept its version number", decl.name_span,
            "; ".join(_PARTS[part] for part in changed) + f"; {advice}")


def _what_changed(decl: ast.PromptDecl, ctx: CheckContext, recorded: PromptHashes | str) -> list[str] | None:
    """None when nothing the lock covers changed; else which of "text" and "model" did
    (an empty list for an entry of format 1, which cannot tell)."""
    if isinstance(recorded, str):
        return None if recorded == legacy_prompt_hash(decl, ctx) else []
    now = prompt_hashes(decl, ctx)
    changed = [part for part, before, after in (("text", recorded.text, now.text), ("model", recorded.model, now.model))
               if before != after]
    return changed or None
