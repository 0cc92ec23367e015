"""Hover: what the name under the cursor is, in the words the language uses."""

from __future__ import annotations

from .. import ast
from ..checks.blocks import BLOCKS
from ..checks.context import CheckContext
from ..checks.expressions import loop_item
from ..formatter import _signature, expr_doc, flat, type_text
from ..types import UNKNOWN
from .symbols import Target


def hover_text(ctx: CheckContext, target: Target) -> str:
    """Markdown for a target: a signature in an fmflow code block, then its doc comment."""
    if target.kind == "builtin":
        builtin = target.node
        return _markdown(builtin.signature, builtin.doc)
    if target.kind == "key":
        spec = BLOCKS.get(target.decl.kind, {}).get(target.name)
        return _markdown(f"{target.name}: …", spec.doc if spec else None)
    if target.kind == "param":
        node = target.node
        text = f"{node.name}: {type_text(node.type)}"
        if getattr(node, "default", None) is not None:
            text += f" = {flat(expr_doc(node.default))}"
        return _markdown(f"(parameter of {target.decl.kind} {target.decl.name}) {text}", _doc(node))
    if target.kind == "variable":
        kind = _variable_type(ctx, target)
        return _markdown(f"(variable) {target.name}" + (f": {kind}" if kind else ""), None)
    if target.kind == "loop":
        item = loop_item(ctx.expr_types.get(id(target.node.iterable), UNKNOWN))
        return _markdown(f"(loop variable) {target.name}" + (f": {item}" if item is not None and item != UNKNOWN
                                                               else ""), None)
    if target.kind == "field":
        return _markdown(f"(field of {target.decl.name}) {target.name}: {type_text(target.node.type)}",
                         _doc(target.node))
    if target.kind == "member":
        return _markdown(f"{target.decl.name}.{target.name}", _doc(target.node))
    return _decl_hover(ctx, target.decl)


def _markdown(code: str, doc: str | None, extra: list[str] | None = None) -> str:
    parts = [f"```fmflow\n{code}\n```"]
    if doc:
        parts.append(doc)
    parts.extend(extra or ())
    return "\n\n".join(parts)


def _doc(node) -> str | None:
    """The ``##`` doc comment of a node, if the language gives it one."""
    doc = getattr(node, "doc", None)
    return getattr(doc, "text", None) or None


def _decl_hover(ctx: CheckContext, decl: ast.Decl) -> str:
    extra: list[str] = []
    if hasattr(decl, "params"):
        code = flat(_signature(decl))
    else:
        code = f"{decl.kind} {decl.name}"
    if isinstance(decl, ast.TypeDecl):
        code += " {\n" + "".join(f"  {f.name}: {type_text(f.type)}\n" for f in decl.fields) + "}"
    elif isinstance(decl, ast.EnumDecl):
        code += " { " + ", ".join(m.name for m in decl.members) + " }"
    elif isinstance(decl, (ast.ModelDecl, ast.RetrieverDecl)):
        code += " {\n" + "".join(f"  {e.key}: {flat(expr_doc(e.value))}\n" for e in decl.entries) + "}"
    if isinstance(decl, ast.PromptDecl):
        extra.append(_prompt_versions(ctx, decl))
    path = ctx.symbols.path_of(decl)
    if path and path != ctx.path:
        extra.append(f"from `{path}`")
    return _markdown(code, _doc(decl), extra)


def _prompt_versions(ctx: CheckContext, decl: ast.PromptDecl) -> str:
    """Each version of the prompt, and whether fmflow.lock records it (and the checker finds it unchanged)."""
    from ..lockfile import LockError, prompt_key, read_lock

    path = ctx.symbols.path_of(decl) or ctx.path
    owner = (ctx.loader.context(path) if ctx.loader else None) or ctx
    try:
        lock = read_lock(path) or {}
    except LockError:
        lock = {}
    changed = [d.span for d in owner.diagnostics if d.code == "E401"]  # the checker's verdict
    lines = []
    for version in owner.symbols.versions(decl.name) or [decl.effective_version]:
        prompt = owner.symbols.get(decl.name, version)
        if prompt is None or prompt_key(prompt) not in lock:
            state = "not locked"
        elif any(prompt.span.start <= span.start <= prompt.span.end for span in changed):
            state = "changed since locked (E401)"
        else:
            state = "locked"
        lines.append(f"- `{decl.name}@{version}`: {state}")
    return "versions:\n" + "\n".join(lines)


def _variable_type(ctx: CheckContext, target: Target) -> str | None:
    for node in target.decl.walk():
        if isinstance(node, ast.Assign) and node.name == target.name:
            found = ctx.expr_types.get(id(node.value))
            if found is not None:
                return str(found)
    return None
