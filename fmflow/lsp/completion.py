"""Completion: what may be written at the cursor, from the checked program.

The file being typed rarely parses, so the names, declarations and types
come from the newest context of the file that did (``Analysis.good_context``),
and the cursor is placed in it by line.
"""

from __future__ import annotations

import os
import re

from lsprotocol import types as lsp

from .. import ast
from ..builtins import BUILTINS
from ..checks.blocks import BLOCKS
from ..checks.context import CheckContext
from ..checks.expressions import loop_item
from ..checks.resolve import TypeResolver, decl_type
from ..checks.templates import JINJA_GLOBALS
from ..parser import DECLARATION_KEYWORDS, KEYWORDS
from ..resources import stdlib_dir
from ..source import SUFFIX, SourceFile
from ..types import BUILTIN_TYPE_NAMES, UNKNOWN, EnumType, StructType, Type, strip_optional
from .hover import _doc
from .symbols import TEMPLATE_KEYS

Kind = lsp.CompletionItemKind
DECL_KINDS = {"model": Kind.Module, "type": Kind.Struct, "enum": Kind.Enum, "prompt": Kind.Function,
              "retriever": Kind.Function, "tool": Kind.Function, "filter": Kind.Function,
              "agent": Kind.Function, "flow": Kind.Function, "test": Kind.Event}
_IMPORT = re.compile(r'^\s*import\s+"([^"]*)$')
_DOTTED = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.\w*$")
_KEY_POSITION = re.compile(r"^\s+\w*$")
_OPEN_TAG = re.compile(r"(\{\{|\{%)(?!.*(\}\}|%\}))[^{}]*$")


def complete(ctx: CheckContext | None, path: str, text: str, offset: int) -> list[lsp.CompletionItem]:
    source = SourceFile(path, text)
    line, col = source.position(offset)
    prefix = source.line_text(line)[:col - 1]
    imported = _IMPORT.match(prefix)
    if imported:
        return _import_items(path, imported.group(1))
    if ctx is None:
        return _keywords()
    decl = _decl_at_line(ctx.module, line)
    template = _template_at(decl, line, col) if decl is not None else None
    if template is not None:
        if not _OPEN_TAG.search(prefix):
            return []  # the template's own text
        return _template_items(ctx, decl, text[template.start:offset], prefix)
    dotted = _DOTTED.search(prefix)
    if dotted:
        return _member_items(ctx, decl, dotted.group(1).split("."), (line, col))
    if decl is not None and decl.kind in BLOCKS and line != decl.span.line and _KEY_POSITION.match(prefix):
        return _key_items(decl)
    keywords = _keywords() if not prefix.strip() or prefix == prefix.lstrip() else []
    return _scope_items(ctx, decl, (line, col)) + keywords


def type_text_of(param) -> str:
    from ..formatter import type_text

    return type_text(param.type)


def _item(label: str, kind, detail: str | None = None, doc: str | None = None) -> lsp.CompletionItem:
    documentation = lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=doc) if doc else None
    return lsp.CompletionItem(label=label, kind=kind, detail=detail, documentation=documentation)


def _keywords() -> list[lsp.CompletionItem]:
    return [_item(k, Kind.Keyword) for k in sorted(set(DECLARATION_KEYWORDS) | set(KEYWORDS))]


def _decl_at_line(module: ast.Module, line: int) -> ast.Decl | None:
    return next((d for d in module.decls if d.span.line <= line <= d.span.end_line), None)


def _template_at(decl: ast.Decl, line: int, col: int):
    """The span of the declaration's template or system text when (line, col) is inside it."""
    for key in TEMPLATE_KEYS:
        entry = decl.entry(key) if hasattr(decl, "entries") else None
        if entry is not None:
            value = entry.value.span
            if (value.line, value.col) < (line, col) <= (value.end_line, value.end_col):
                return value
    return None


# Jinja's block tags that bind names, as far as the text before the cursor shows them (the
# template may not parse while it is being typed).
_SCOPE_TAGS = re.compile(
    r"\{%-?\s*(?:for\s+(?P<targets>[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s+in\s+(?P<iterable>[A-Za-z_][\w.]*)?"
    r"|(?P<endfor>endfor)\b|set\s+(?P<set>[A-Za-z_]\w*)\s*=)")
_TEMPLATE_DOTTED = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.\w*$")


def _template_items(ctx: CheckContext, decl: ast.Decl, before: str, prefix: str) -> list[lsp.CompletionItem]:
    """Inside a tag of a template: the fields after `name.`, else the parameters, the variables
    of the `{% for %}` loops open at the cursor (and `loop`), `{% set %}` names and Jinja's globals."""
    resolver = TypeResolver(ctx)
    params = {p.name: resolver.resolve_quietly(p.type) for p in getattr(decl, "params", ())}
    levels = _template_scope(resolver, params, before)
    dotted = _TEMPLATE_DOTTED.search(prefix)
    if dotted:
        current = _template_path_type(resolver, _visible(params, levels), dotted.group(1))
        return [_item(name, Kind.Field, str(t)) for name, t in _fields(resolver, current).items()]
    items = [_item(name, Kind.Variable, None if t is None or t == UNKNOWN else str(t))
             for level in reversed(levels) for name, t in level.items()]
    items += [_item(p.name, Kind.Variable, type_text_of(p), _doc(p)) for p in getattr(decl, "params", ())]
    items += [_item(name, Kind.Function) for name in sorted(JINJA_GLOBALS - {"loop"})]  # `loop`: in a loop only
    seen: set[str] = set()
    return [i for i in items if not (i.label in seen or seen.add(i.label))]


def _template_scope(resolver: TypeResolver, params: dict[str, Type], before: str) -> list[dict[str, Type | None]]:
    """The names `{% set %}` and the `{% for %}` loops still open bind at the end of ``before``,
    a dict per level (outermost first), with their types where a loop goes over a parameter
    or its fields."""
    levels: list[dict[str, Type | None]] = [{}]
    for tag in _SCOPE_TAGS.finditer(before):
        if tag.group("endfor"):
            if len(levels) > 1:
                levels.pop()
        elif tag.group("set"):
            levels[-1][tag.group("set")] = None
        else:
            names = [n.strip() for n in tag.group("targets").split(",")]
            iterable = tag.group("iterable")
            item = loop_item(_template_path_type(resolver, _visible(params, levels), iterable)) if iterable else None
            levels.append({"loop": None, **{n: (item if len(names) == 1 else None) for n in names}})
    return levels


def _visible(params: dict[str, Type], levels: list[dict[str, Type | None]]) -> dict[str, Type | None]:
    visible: dict[str, Type | None] = dict(params)
    for level in levels:
        visible.update(level)
    return visible


def _template_path_type(resolver: TypeResolver, names: dict[str, Type | None], path: str) -> Type:
    root, *attrs = path.split(".")
    current = names.get(root) or UNKNOWN
    for attr in attrs:
        current = strip_optional(_fields(resolver, current).get(attr, UNKNOWN))
    return current


def _import_items(path: str, written: str) -> list[lsp.CompletionItem]:
    items = [_item("std/" + p.stem, Kind.Module, "standard library") for p in sorted(stdlib_dir().glob("*" + SUFFIX))]
    folder = os.path.dirname(path) if os.path.isabs(path) else ""
    if folder and not written.startswith("std/"):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            names = []
        items += [_item("./" + n, Kind.File) for n in names
                  if n.endswith(SUFFIX) and os.path.join(folder, n) != path]
    return items


def _key_items(decl: ast.Decl) -> list[lsp.CompletionItem]:
    present = {e.key for e in decl.entries}
    return [lsp.CompletionItem(label=key, kind=Kind.Property, detail="required" if spec.required else None,
                               documentation=spec.doc or None, insert_text=f"{key}: ")
            for key, spec in BLOCKS[decl.kind].items() if key not in present]


def _scope_items(ctx: CheckContext, decl: ast.Decl | None, cursor: tuple[int, int]) -> list[lsp.CompletionItem]:
    items: list[lsp.CompletionItem] = []
    if decl is not None:
        for loop, item in _loops_around(ctx, decl, cursor):
            items.append(_item(loop.var, Kind.Variable, str(item)))
        for param in getattr(decl, "params", ()):
            items.append(_item(param.name, Kind.Variable, type_text_of(param), _doc(param)))
        for node in decl.walk():
            if isinstance(node, ast.Assign):
                found = ctx.expr_types.get(id(node.value))
                items.append(_item(node.name, Kind.Variable, str(found) if found else None))
    for name, decls in ctx.symbols.decls.items():
        first = decls[0]
        items.append(_item(name, DECL_KINDS.get(first.kind, Kind.Text), first.kind, _doc(first)))
    items += [_item(b.name, Kind.Function, b.signature, b.doc) for b in BUILTINS.values()]
    items += [_item(t, Kind.TypeParameter, "built-in type") for t in BUILTIN_TYPE_NAMES]
    seen: set[str] = set()
    return [i for i in items if not (i.label in seen or seen.add(i.label))]


def _loops_around(ctx: CheckContext, decl: ast.Decl, cursor: tuple[int, int]) -> list[tuple[ast.Comprehension, Type]]:
    """The comprehensions whose variable is in scope at ``cursor`` (line, column), innermost first,
    with the type of that variable.

    The variable is bound in the element and the filter, not in the list looped over.
    """
    found = []
    for node in decl.walk():
        if isinstance(node, ast.Comprehension) and any(
                part is not None and _within(part.span, cursor) for part in (node.element, node.condition)):
            found.append((node, loop_item(ctx.expr_types.get(id(node.iterable), UNKNOWN)) or UNKNOWN))
    return found[::-1]


def _within(span, cursor: tuple[int, int]) -> bool:
    return (span.line, span.col) <= cursor <= (span.end_line, span.end_col)


def _member_items(ctx: CheckContext, decl: ast.Decl | None, chain: list[str],
                  cursor: tuple[int, int]) -> list[lsp.CompletionItem]:
    """Fields of the value ``a.b.c`` names, or the members of an enum."""
    resolver = TypeResolver(ctx)
    current = _root_type(ctx, resolver, decl, chain[0], cursor)
    for attr in chain[1:]:
        fields = _fields(resolver, current)
        current = strip_optional(fields.get(attr, UNKNOWN))
    if isinstance(current, EnumType):
        members = current.decl.members if current.decl is not None else []
        return [_item(m.name, Kind.EnumMember, current.name, _doc(m)) for m in members]
    docs = {f.name: _doc(f) for f in getattr(getattr(current, "decl", None), "fields", ())}
    return [_item(name, Kind.Field, str(t), docs.get(name)) for name, t in _fields(resolver, current).items()]


def _fields(resolver: TypeResolver, t: Type) -> dict[str, Type]:
    t = strip_optional(t)
    return resolver.fields(t) if isinstance(t, StructType) else {}


def _root_type(ctx: CheckContext, resolver: TypeResolver, decl: ast.Decl | None, name: str,
               cursor: tuple[int, int]) -> Type:
    if decl is not None:
        for loop, item in _loops_around(ctx, decl, cursor):
            if loop.var == name:
                return item
        for param in getattr(decl, "params", ()):
            if param.name == name:
                return resolver.resolve_quietly(param.type)
        for node in decl.walk():
            if isinstance(node, ast.Assign) and node.name == name:
                return ctx.expr_types.get(id(node.value), UNKNOWN)
        if name == "output":
            return _output_type(ctx, resolver, decl)
    found = ctx.lookup(name)
    if isinstance(found, ast.EnumDecl):
        return decl_type(found, ctx.symbols.path_of(found))
    return UNKNOWN


def _output_type(ctx: CheckContext, resolver: TypeResolver, decl: ast.Decl) -> Type:
    """``output`` in a prompt's checks is its reply; in a test's expectations, the flow's result."""
    if isinstance(decl, ast.TestDecl):
        flow_entry = decl.entry("flow")
        flow = ctx.lookup(flow_entry.value.id) if flow_entry and isinstance(flow_entry.value, ast.Name) else None
        return resolver.resolve_quietly(getattr(flow, "returns", None)) if flow is not None else UNKNOWN
    return resolver.resolve_quietly(getattr(decl, "returns", None))
