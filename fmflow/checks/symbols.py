"""E102: one namespace per file, so every name is declared once.

Builds the symbol table (imports first, then local declarations) and reports
duplicates: declarations, prompt versions, parameters, fields, enum members
and block keys.
"""

from __future__ import annotations

from typing import Callable

from .. import ast
from ..types import BUILTIN_TYPE_NAMES
from .context import CheckContext


def collect_symbols(ctx: CheckContext) -> None:
    for written, (path, module) in ctx.imported.items():
        for decl in module.decls:
            if isinstance(decl, (ast.TestDecl, ast.EvalDecl)):
                continue  # tests and evals are not part of a module's interface
            existing = ctx.symbols.get(decl.name)
            if existing is not None and not _are_prompt_versions(existing, decl):
                ctx.diagnostics.add(
                    "E102", f"'{decl.name}' is imported twice (again from '{written}')",
                    _import_span(ctx, written), "rename one of the declarations")
                continue
            ctx.symbols.add(decl, path)
    for decl in ctx.module.decls:
        _add_local(ctx, decl)
        _check_members(ctx, decl)


def _add_local(ctx: CheckContext, decl: ast.Decl) -> None:
    if decl.name in BUILTIN_TYPE_NAMES:
        ctx.diagnostics.add("E102", f"'{decl.name}' is a built-in type and cannot be redefined",
                            decl.name_span, "choose another name")
        return
    previous = ctx.symbols.decls.get(decl.name, [])
    for other in previous:
        if _are_prompt_versions(other, decl):
            if other.effective_version == decl.effective_version:
                ctx.diagnostics.add(
                    "E102", f"prompt '{decl.name}@{decl.effective_version}' is defined twice",
                    decl.name_span, f"give this one a new version: {decl.name}@{_next_version(ctx, decl.name)}")
                return
            continue
        where = _where(ctx, other)
        ctx.diagnostics.add("E102", f"'{decl.name}' is already defined {where}", decl.name_span,
                            "names share one namespace per file (imports included); rename one")
        return
    ctx.symbols.add(decl, ctx.path)


def _are_prompt_versions(a: ast.Decl, b: ast.Decl) -> bool:
    return isinstance(a, ast.PromptDecl) and isinstance(b, ast.PromptDecl)


def _next_version(ctx: CheckContext, name: str) -> int:
    return max(ctx.symbols.versions(name) or [0]) + 1


def _where(ctx: CheckContext, decl: ast.Decl) -> str:
    path = ctx.symbols.path_of(decl)
    if path == ctx.path:
        return f"as a {decl.kind} on line {decl.name_span.line}"
    written = next((w for w, (p, _) in ctx.imported.items() if p == path), path)
    return f"as a {decl.kind} imported from '{written}'"


def _import_span(ctx: CheckContext, written: str):
    return next(i.span for i in ctx.module.imports if i.path == written)


def _check_members(ctx: CheckContext, decl: ast.Decl) -> None:
    """Duplicate parameters, fields, enum members and block keys inside one declaration."""
    # (what, nodes, the attribute that names a node, the span to point at; made for a duplicate only)
    groups: list[tuple[str, list, str, Callable]] = []
    if hasattr(decl, "params"):
        groups.append(("parameter", decl.params, "name", _name_span))
    if isinstance(decl, ast.TypeDecl):
        groups.append(("field", decl.fields, "name", _name_span))
    if isinstance(decl, ast.EnumDecl):
        groups.append(("member", decl.members, "name", lambda m: m.span))
    if hasattr(decl, "entries"):
        groups.append(("key", decl.entries, "key", lambda e: e.key_span))
    for what, nodes, attribute, span_of in groups:
        seen: set[str] = set()
        for node in nodes:
            name = getattr(node, attribute)
            if name in seen:
                ctx.diagnostics.add("E102", f"{what} '{name}' appears twice in {decl.kind} '{decl.name}'",
                                    span_of(node), f"remove or rename the second '{name}'")
            seen.add(name)
    for node in ctx.nodes(decl):
        if isinstance(node, ast.DictExpr):
            _check_dict_keys(ctx, node)


def _name_span(node):
    """The span of a parameter's or field's name, at the front of the node."""
    return node.span.head(len(node.name))


def _check_dict_keys(ctx: CheckContext, node: ast.DictExpr) -> None:
    seen: set[str] = set()
    for entry in node.entries:
        if entry.key in seen:
            key_span = entry.span if entry.quoted else entry.span.head(len(entry.key))
            ctx.diagnostics.add("E102", f"key '{entry.key}' appears twice in this dict", key_span,
                                f"remove or rename the second '{entry.key}'")
        seen.add(entry.key)
