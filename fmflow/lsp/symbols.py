"""What a position names, and every place that names the same thing.

A target is a declaration (found through the checker's references), a
parameter or variable of one declaration, a field of a declared type, or a
built-in function. Occurrences are collected over every checked file, so
definition, references, rename and hover agree on what a name means.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import Iterator

from .. import ast
from ..builtins import BUILTINS
from ..checks.context import CheckContext
from ..checks.templates import _TAG
from ..resources import stdlib_dir
from ..source import Span
from ..types import StructType, strip_optional

TEMPLATE_KEYS = ("template", "system")


@dataclass(frozen=True)
class Target:
    """What a name at a position means."""

    kind: str  # "decl" | "param" | "variable" | "loop" | "field" | "member" | "builtin" | "key"
    name: str
    path: str  # the file of the declaration (of the owner for params, variables, fields)
    decl: ast.Decl | None = None  # the declaration, or the one that owns the name
    node: object = None  # the Param, Assign, Comprehension (of a loop variable), Field, EnumMember or Entry


@dataclass(frozen=True)
class Occurrence:
    path: str
    span: Span
    is_definition: bool = False


def contains(span: Span | None, offset: int) -> bool:
    return span is not None and span.start <= offset <= span.end


def name_span(ctx: CheckContext, span: Span, name: str) -> Span | None:
    """Where ``name`` is written inside ``span`` (a reference may span `name@2` or `key: value`)."""
    text = ctx.source.text
    if text[span.start:span.start + len(name)] == name:
        return ctx.source.span(span.start, span.start + len(name))
    match = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)").search(text, span.start, span.end)
    return ctx.source.span(match.start(), match.end()) if match else None


@functools.lru_cache(maxsize=1024)
def in_stdlib(path: str) -> bool:
    """Whether ``path`` is a file of the standard library (asked for every name semantic tokens colour)."""
    return os.path.abspath(path).startswith(str(stdlib_dir()))


def enclosing_decl(module: ast.Module, offset: int) -> ast.Decl | None:
    return next((d for d in module.decls if d.span.start <= offset <= d.span.end), None)


# ------------------------------------------------------------------- locate
def target_at(ctx: CheckContext, offset: int) -> tuple[Target, Span] | None:
    """What the name at ``offset`` means, and the span of that name."""
    decl = enclosing_decl(ctx.module, offset)
    for ref in ctx.references:
        if contains(ref.span, offset):
            span = name_span(ctx, ref.span, ref.decl.name)
            if span is not None and contains(span, offset):
                return _decl_target(ctx, ref.decl), span
    if decl is None:
        return None
    if contains(decl.name_span, offset):
        return _decl_target(ctx, decl), decl.name_span
    return _member_target(ctx, decl, offset) or _local_target(ctx, decl, offset)


def _decl_target(ctx: CheckContext, decl: ast.Decl) -> Target:
    return Target("decl", decl.name, ctx.symbols.path_of(decl) or ctx.path, decl, decl)


def _member_target(ctx: CheckContext, decl: ast.Decl, offset: int) -> tuple[Target, Span] | None:
    """A parameter, field, enum member or block key where it is declared."""
    for param in getattr(decl, "params", ()):
        head = param.span.head(len(param.name))
        if contains(head, offset):
            return Target("param", param.name, ctx.path, decl, param), head
    for field in getattr(decl, "fields", ()):
        head = field.span.head(len(field.name))
        if contains(head, offset):
            return Target("field", field.name, ctx.path, decl, field), head
    for member in getattr(decl, "members", ()):
        if contains(member.span, offset):
            return Target("member", member.name, ctx.path, decl, member), member.span
    for entry in getattr(decl, "entries", ()):
        if contains(entry.key_span, offset):
            return Target("key", entry.key, ctx.path, decl, entry), entry.key_span
    return None


def _local_target(ctx: CheckContext, decl: ast.Decl, offset: int) -> tuple[Target, Span] | None:
    params = {p.name: p for p in getattr(decl, "params", ())}
    assigns = _assignments(decl)
    for name, spans in assigns.items():
        for span in spans:
            if contains(span, offset):
                return Target("variable", name, ctx.path, decl, name), span
    for node in decl.walk():
        if isinstance(node, ast.Attribute) and contains(node.attr_span, offset):
            return _field_target(ctx, node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            found = _argument_target(ctx, node, offset)
            if found:
                return found
        if isinstance(node, ast.Comprehension) and contains(node.span, offset):
            found = _loop_target(ctx, decl, node, offset)
            if found:
                return found
    found = _template_target(ctx, decl, offset, params)
    if found:
        return found
    for name in ast.read_names(decl):
        if contains(name.span, offset) and name.version is None:
            if name.id in params:
                return Target("param", name.id, ctx.path, decl, params[name.id]), name.span
            if name.id in assigns:
                return Target("variable", name.id, ctx.path, decl, name.id), name.span
            if name.id in BUILTINS:
                return Target("builtin", name.id, ctx.path, None, BUILTINS[name.id]), name.span
    return None


def _loop_target(ctx: CheckContext, decl: ast.Decl, loop: ast.Comprehension,
                 offset: int) -> tuple[Target, Span] | None:
    """The variable of ``loop`` (`x` in `[… for x in …]`), where it is bound or read.
    An inner comprehension binding the same name is left to the walk, which meets it next."""
    if loop.var_span is not None and contains(loop.var_span, offset):
        return Target("loop", loop.var, ctx.path, decl, loop), loop.var_span
    for name in loop_variable_uses(loop):
        if contains(name.span, offset):
            return Target("loop", loop.var, ctx.path, decl, loop), name.span
    return None


def loop_scope(loop: ast.Comprehension) -> list[ast.Node]:
    """The parts of ``loop`` where its variable is bound: the element and the condition."""
    return [loop.element] + ([loop.condition] if loop.condition is not None else [])


def loop_variable_uses(loop: ast.Comprehension) -> list[ast.Name]:
    """Where the element and the condition of ``loop`` read its variable (not one of an inner
    comprehension of the same name)."""
    return [name for part in loop_scope(loop) for name, bound in ast.scoped_names(part)
            if name.id == loop.var and name.version is None and loop.var not in bound]


def _field_target(ctx: CheckContext, node: ast.Attribute) -> tuple[Target, Span] | None:
    struct = strip_optional(ctx.expr_types.get(id(node.value)))
    if isinstance(struct, StructType) and struct.decl is not None:
        field = next((f for f in struct.decl.fields if f.name == node.attr), None)
        if field is not None:
            return Target("field", field.name, struct.path, struct.decl, field), node.attr_span
    return None


def _argument_target(ctx: CheckContext, call: ast.Call, offset: int) -> tuple[Target, Span] | None:
    """``name:`` in ``greet(name: …)`` is greet's parameter (or a field, for a type's constructor)."""
    callee = _referenced(ctx, call.func.span)
    for arg in call.args:
        if arg.name and contains(arg.span.head(len(arg.name)), offset) and callee is not None:
            owner = ctx.symbols.path_of(callee) or ctx.path
            for member in [*getattr(callee, "params", ()), *getattr(callee, "fields", ())]:
                if member.name == arg.name:
                    kind = "field" if isinstance(member, ast.Field) else "param"
                    return Target(kind, arg.name, owner, callee, member), arg.span.head(len(arg.name))
    return None


def _referenced(ctx: CheckContext, span: Span) -> ast.Decl | None:
    return next((r.decl for r in ctx.references if r.span == span), None)


def _template_target(ctx: CheckContext, decl: ast.Decl, offset: int, params: dict) -> tuple[Target, Span] | None:
    for name, span in template_names(ctx, decl):
        if contains(span, offset) and name in params:
            return Target("param", name, ctx.path, decl, params[name]), span
    return None


# -------------------------------------------------------------- occurrences
def template_names(ctx: CheckContext, decl: ast.Decl) -> Iterator[tuple[str, Span]]:
    """Names written inside the ``{{ }}``/``{% %}`` tags of a prompt's or agent's templates."""
    for key in TEMPLATE_KEYS:
        entry = decl.entry(key) if hasattr(decl, "entries") else None
        if entry is None or not isinstance(entry.value, (ast.BlockString, ast.Literal)):
            continue
        text = ctx.source.text
        for tag in _TAG.finditer(text, entry.value.span.start, entry.value.span.end):
            for word in re.finditer(r"(?<![\w.'\"])[A-Za-z_]\w*", tag.group()):
                start = tag.start() + word.start()
                yield word.group(), ctx.source.span(start, start + len(word.group()))


def _assignments(decl: ast.Decl) -> dict[str, list[Span]]:
    found: dict[str, list[Span]] = {}
    for node in decl.walk():
        if isinstance(node, ast.Assign):
            found.setdefault(node.name, []).append(node.name_span)
    return found


def occurrences(target: Target, contexts: list[CheckContext]) -> list[Occurrence]:
    """Every place ``target`` is named, definitions first, without repeats."""
    found: dict[tuple[str, int], Occurrence] = {}
    for ctx in contexts:
        for occurrence in _occurrences_in(target, ctx):
            found.setdefault((occurrence.path, occurrence.span.start), occurrence)
    return sorted(found.values(), key=lambda o: (not o.is_definition, o.path, o.span.start))


def _occurrences_in(target: Target, ctx: CheckContext) -> Iterator[Occurrence]:
    if target.kind == "decl":
        yield from _decl_occurrences(target, ctx)
    elif target.kind in ("param", "variable"):
        yield from _local_occurrences(target, ctx)
    elif target.kind == "loop" and ctx.path == target.path:
        loop = target.node
        if loop.var_span is not None:
            yield Occurrence(ctx.path, loop.var_span, True)
        for name in loop_variable_uses(loop):
            yield Occurrence(ctx.path, name.span)
    elif target.kind == "field":
        yield from _field_occurrences(target, ctx)
    elif target.kind in ("member", "key") and ctx.path == target.path:
        yield Occurrence(ctx.path, target.node.span if target.kind == "member" else target.node.key_span, True)


def _same_decl(target: Target, decl: ast.Decl, path: str) -> bool:
    """The target's declaration, or another version of the same prompt."""
    return decl is target.decl or (decl.name == target.name and path == target.path
                                   and isinstance(decl, ast.PromptDecl) and isinstance(target.decl, ast.PromptDecl))


def _decl_occurrences(target: Target, ctx: CheckContext) -> Iterator[Occurrence]:
    if ctx.path == target.path:
        for decl in ctx.module.decls:
            if _same_decl(target, decl, ctx.path):
                yield Occurrence(ctx.path, decl.name_span, True)
    for ref in ctx.references:
        if _same_decl(target, ref.decl, ctx.symbols.path_of(ref.decl)):
            span = name_span(ctx, ref.span, target.name)
            if span is not None:
                yield Occurrence(ctx.path, span)


def _local_occurrences(target: Target, ctx: CheckContext) -> Iterator[Occurrence]:
    decl = target.decl
    if ctx.path == target.path and any(d is decl for d in ctx.module.decls):
        refs = {r.span.start for r in ctx.references}
        if target.kind == "param":
            yield Occurrence(ctx.path, target.node.span.head(len(target.name)), True)
        for span in _assignments(decl).get(target.name, ()):
            yield Occurrence(ctx.path, span, target.kind == "variable")
        for name in ast.read_names(decl):
            if name.id == target.name and name.version is None and name.span.start not in refs:
                yield Occurrence(ctx.path, name.span)
        if target.kind == "param":
            for name, span in template_names(ctx, decl):
                if name == target.name:
                    yield Occurrence(ctx.path, span)
    if target.kind == "param":
        yield from _keyword_occurrences(target, ctx)


def _keyword_occurrences(target: Target, ctx: CheckContext) -> Iterator[Occurrence]:
    """``name:`` in calls of the owner, and in the ``input:`` of tests of a flow."""
    for decl in ctx.module.decls:
        for node in decl.walk():
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and _referenced(ctx, node.func.span) is target.decl:
                for arg in node.args:
                    if arg.name == target.name:
                        yield Occurrence(ctx.path, arg.span.head(len(arg.name)))
        if isinstance(decl, ast.TestDecl) and decl.entry("flow") and decl.entry("input"):
            flow, inputs = decl.entry("flow").value, decl.entry("input").value
            if isinstance(inputs, ast.DictExpr) and _referenced(ctx, flow.span) is target.decl:
                for entry in inputs.entries:
                    if entry.key == target.name and not entry.quoted:
                        yield Occurrence(ctx.path, entry.span.head(len(entry.key)))


def _field_occurrences(target: Target, ctx: CheckContext) -> Iterator[Occurrence]:
    if ctx.path == target.path and any(d is target.decl for d in ctx.module.decls):
        yield Occurrence(ctx.path, target.node.span.head(len(target.name)), True)
    for decl in ctx.module.decls:
        for node in decl.walk():
            if isinstance(node, ast.Attribute) and node.attr == target.name:
                struct = strip_optional(ctx.expr_types.get(id(node.value)))
                if isinstance(struct, StructType) and struct.decl is target.decl:
                    yield Occurrence(ctx.path, node.attr_span)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and _referenced(ctx, node.func.span) is target.decl:
                for arg in node.args:
                    if arg.name == target.name:
                        yield Occurrence(ctx.path, arg.span.head(len(arg.name)))
