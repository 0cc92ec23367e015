"""Semantic tokens: what each name in a file means, for the editor to colour.

Keywords, strings, numbers and comments stay with the TextMate grammar; these
tokens add what only the parse and the checker know: which names are
declarations (and of what kind), parameters, variables, fields, enum members,
calls of flows, tools and built-ins. A file with syntax errors still gets
tokens for what parsed (its names resolved against its own declarations,
since the checker's passes did not run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from lsprotocol import types as lsp

from .. import ast
from ..builtins import BUILTINS
from ..checks.context import CheckContext
from ..source import SourceFile, Span
from ..types import BUILTIN_TYPE_NAMES
from .positions import position_at, utf16_length
from .symbols import in_stdlib, name_span, template_names

TOKEN_TYPES = ("namespace", "type", "enum", "enumMember", "function", "parameter", "variable", "property",
               "event")
TOKEN_MODIFIERS = ("declaration", "readonly", "defaultLibrary")
LEGEND = lsp.SemanticTokensLegend(token_types=list(TOKEN_TYPES), token_modifiers=list(TOKEN_MODIFIERS))

# A declaration's token type, where it is declared and wherever it is named.
DECL_TOKENS = {"model": "namespace", "type": "type", "enum": "enum", "prompt": "function", "agent": "function",
               "tool": "function", "filter": "function", "retriever": "function", "flow": "function",
               "test": "event", "eval": "event", "pipeline": "event"}
# Names the expressions of a declaration see without declaring them, by its kind.
IMPLICIT_NAMES = {"test": ("output", "calls"), "prompt": ("output",), "agent": ("output",),
                  "eval": ("record", "output"), "pipeline": ("record",)}


@dataclass(frozen=True)
class Token:
    span: Span
    type: str
    modifiers: tuple[str, ...] = ()


def semantic_tokens(ctx: CheckContext) -> list[Token]:
    """The file's tokens in order, one per name (the first reading of a name wins)."""
    found: dict[int, Token] = {}
    for token in _tokens(ctx):
        if token.span.line == token.span.end_line and token.span.end > token.span.start:
            found.setdefault(token.span.start, token)
    return [found[start] for start in sorted(found)]


def encode(source: SourceFile, tokens: list[Token], within: lsp.Range | None = None) -> list[int]:
    """LSP's relative encoding: per token, the line and start deltas, length, type and modifier bits."""
    data: list[int] = []
    line = character = 0
    for token in tokens:
        start = position_at(source, token.span.start)
        if within is not None and not _inside(start, within):
            continue
        length = utf16_length(source.text[token.span.start:token.span.end])
        delta_line = start.line - line
        delta_start = start.character - character if delta_line == 0 else start.character
        bits = sum(1 << TOKEN_MODIFIERS.index(m) for m in token.modifiers)
        data += [delta_line, delta_start, length, TOKEN_TYPES.index(token.type), bits]
        line, character = start.line, start.character
    return data


def _inside(position: lsp.Position, within: lsp.Range) -> bool:
    at = (position.line, position.character)
    return (within.start.line, within.start.character) <= at < (within.end.line, within.end.character)


# ------------------------------------------------------------------ collect
def _tokens(ctx: CheckContext) -> Iterator[Token]:
    declared = {d.name: d for d in ctx.module.decls}
    for decl in ctx.module.decls:
        yield Token(decl.name_span, DECL_TOKENS.get(decl.kind, "function"), ("declaration",))
    for ref in ctx.references:
        span = name_span(ctx, ref.span, ref.decl.name)
        if span is not None:
            yield _decl_token(ctx, ref.decl, span)
    for decl in ctx.module.decls:
        yield from _member_tokens(decl)
        yield from _local_tokens(ctx, decl, declared)


def _decl_token(ctx: CheckContext, decl: ast.Decl, span: Span) -> Token:
    path = ctx.symbols.path_of(decl)
    library = ("defaultLibrary",) if path and in_stdlib(path) else ()
    return Token(span, DECL_TOKENS.get(decl.kind, "function"), library)


def _member_tokens(decl: ast.Decl) -> Iterator[Token]:
    """Parameters, fields and enum members where they are declared."""
    for param in getattr(decl, "params", ()):
        yield Token(param.span.head(len(param.name)), "parameter", ("declaration",))
    for field in getattr(decl, "fields", ()):
        yield Token(field.span.head(len(field.name)), "property", ("declaration",))
    for member in getattr(decl, "members", ()):
        yield Token(member.span, "enumMember", ("declaration", "readonly"))


def _local_tokens(ctx: CheckContext, decl: ast.Decl, declared: dict[str, ast.Decl]) -> Iterator[Token]:
    """Variables, reads of names, built-in types, fields and enum members after a dot, keyword arguments,
    filters."""
    params = {p.name for p in getattr(decl, "params", ())}
    assigned = set()
    for node in decl.walk():
        if isinstance(node, ast.TypeRef):
            if node.name in BUILTIN_TYPE_NAMES:
                yield Token(node.span.head(len(node.name)), "type", ("defaultLibrary",))
        elif isinstance(node, ast.Assign):
            assigned.add(node.name)
            yield Token(node.name_span, "variable", ("declaration",))
        elif isinstance(node, ast.Comprehension) and node.var_span is not None:
            yield Token(node.var_span, "variable", ("declaration",))
        elif isinstance(node, ast.Attribute) and node.attr_span is not None:
            yield _attribute_token(ctx, node, declared)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            yield from _keyword_tokens(ctx, node, declared)
        elif isinstance(node, ast.Pipe) and node.filter_span is not None:
            yield from _callee_token(ctx, node.filter, node.filter_span, declared)
    for name, bound in ast.scoped_names(decl):
        if name.id in bound or name.id in assigned:
            yield Token(name.span.head(len(name.id)), "variable")
        elif name.id in params:
            yield Token(name.span.head(len(name.id)), "parameter")
        elif name.id in IMPLICIT_NAMES.get(decl.kind, ()):
            yield Token(name.span.head(len(name.id)), "variable", ("readonly", "defaultLibrary"))
        else:
            yield from _callee_token(ctx, name.id, name.span.head(len(name.id)), declared)
    for name, span in template_names(ctx, decl):
        if name in params:
            yield Token(span, "parameter")
    yield from _test_input_tokens(decl)


def _lookup(ctx: CheckContext, name: str, declared: dict[str, ast.Decl]) -> ast.Decl | None:
    """The declaration ``name`` means (the file's own when its checking did not run)."""
    return ctx.lookup(name) or declared.get(name)


def _callee_token(ctx: CheckContext, name: str, span: Span, declared: dict[str, ast.Decl]) -> Iterator[Token]:
    decl = _lookup(ctx, name, declared)
    if decl is not None:
        yield _decl_token(ctx, decl, span)
    elif name in BUILTINS:
        yield Token(span, "function", ("defaultLibrary",))


def _attribute_token(ctx: CheckContext, node: ast.Attribute, declared: dict[str, ast.Decl]) -> Token:
    if isinstance(node.value, ast.Name) and isinstance(_lookup(ctx, node.value.id, declared), ast.EnumDecl):
        return Token(node.attr_span, "enumMember", ("readonly",))
    return Token(node.attr_span, "property")


def _keyword_tokens(ctx: CheckContext, call: ast.Call, declared: dict[str, ast.Decl]) -> Iterator[Token]:
    """``name:`` in ``f(name: …)``: a parameter of what is called, a field for a type's constructor."""
    callee = _lookup(ctx, call.func.id, declared)
    kind = "property" if isinstance(callee, ast.TypeDecl) else "parameter"
    for arg in call.args:
        if arg.name:
            yield Token(arg.span.head(len(arg.name)), kind)


def _test_input_tokens(decl: ast.Decl) -> Iterator[Token]:
    """The keys of a test's ``input:`` are the flow's parameters."""
    inputs = decl.entry("input") if isinstance(decl, ast.TestDecl) else None
    if inputs is not None and isinstance(inputs.value, ast.DictExpr):
        for entry in inputs.value.entries:
            if not entry.quoted:
                yield Token(entry.span.head(len(entry.key)), "parameter")

