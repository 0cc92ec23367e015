"""How deeply a program may nest, checked once, right after parsing.

The checker, the formatter, the compiler and the runtime walk expressions by
recursion, which Python bounds (and a coroutine per level at run time bounds
sooner). Rather than make each of them iterative, the parser refuses nesting
past MAX_NESTING levels with one E001 at the first place that goes deeper,
and sets that declaration aside, so every later phase only ever sees trees it
can walk. The limit is far beyond what people write (CPython's parser allows
200 nested brackets, Clang 256).

What counts as a level: each expression inside another (a bracket, an
operand, an argument, `not`, unary `-`, `a if c else b`), each `if` inside a
flow's body, each type inside `list[…]`/`dict[…]`. What does not: a long
flat chain of one operator (`a + b + c …`, `x and y and z …`, `v | f | g …`),
which generated code writes with thousands of terms; every phase walks those
with a loop (``ast.binary_chain``, ``ast.pipe_chain``).

Types nest too: `list[…]`, `dict[…]`, `?`, and declared types through each
other's fields (`type A { b: B }`, `type B { c: C }` …, without any
bracket). The runtime builds pydantic models and JSON schemas from them by
recursion, about twenty Python frames a level, which fails near 48 levels;
the checker allows MAX_TYPE_DEPTH levels (``type_depth``; a recursive type
counts once). Real outputs nest a handful of levels (OpenAI's structured
outputs allow ten).
"""

from __future__ import annotations

from typing import Callable

from . import ast
from .diagnostics import Diagnostics
from .source import SourceFile
from .types import DictType, ListType, OptionalType, StructType, Type

MAX_NESTING = 100
MAX_TYPE_DEPTH = 32

# Nodes that hold a place for an expression or a statement but are no level of their own.
# Sets of exact classes (none of these is subclassed): a set lookup per node, not nine isinstance tests.
_PLACES = frozenset({ast.Arg, ast.DictEntry, ast.Entry, ast.Assign, ast.Return, ast.Branch, ast.Param, ast.Field,
                     ast.EnumMember})
_LEAVES = frozenset({ast.Name, ast.Literal, ast.BlockString})


def check_nesting(module: ast.Module, source: SourceFile, diagnostics: Diagnostics) -> None:
    """E001 for each declaration nested deeper than MAX_NESTING; such declarations are set aside.

    The walk that measures the depth also lists every node of each declaration kept, in
    source order (``module.walks``): the checker's passes start from those lists
    (``CheckContext.nodes``) rather than walk each declaration again.
    """
    kept: list[ast.Decl] = []
    walks: list[tuple[ast.Decl, list[ast.Node]]] = []
    for decl in module.decls:
        nodes: list[ast.Node] = []
        too_deep = first_too_deep(decl, nodes)
        if too_deep is None:
            kept.append(decl)
            walks.append((decl, nodes))
            continue
        start = too_deep.span.start
        diagnostics.add("E001", f"nested too deeply: more than {MAX_NESTING} levels of brackets, operators or ifs",
                        source.span(start, start + 1),
                        "give the inner parts names (`part = …`) or split them into smaller flows")
    if len(kept) != len(module.decls):
        module.decls = kept
        module.recovered = True
    module.walks = walks


def first_too_deep(root: ast.Node, visited: list[ast.Node] | None = None) -> ast.Node | None:
    """The first node (in source order) more than MAX_NESTING levels below ``root``, if any.
    ``visited`` receives the nodes looked at, in source order (all of them when none is too deep)."""
    stack: list[tuple[ast.Node, int]] = [(root, 0)]
    visit = visited.append if visited is not None else None
    while stack:
        node, depth = stack.pop()
        if visit is not None:
            visit(node)
        if type(node) in _LEAVES:  # a name or literal adds no level of its own (and holds no node)
            continue
        if depth > MAX_NESTING:
            return node
        chain = isinstance(node, (ast.Binary, ast.Pipe))  # only these continue a chain
        children = node.children()
        for child in reversed(children):
            same_level = type(child) in _PLACES or (chain and ast.continues_chain(node, child))
            stack.append((child, depth if same_level else depth + 1))
    return None


def type_depth(root: Type, fields_of: Callable[[StructType], dict[str, Type]],
               depth: dict[Type, int] | None = None) -> int:
    """Levels of types inside ``root`` (itself included), following declared types' fields.

    A declared type met again below itself (a recursive type) adds nothing
    more. ``depth`` keeps what is known between calls.
    """
    depth = {} if depth is None else depth
    expanding: set[Type] = set()
    stack: list[tuple[Type, bool]] = [(root, False)]
    while stack:
        current, children_done = stack.pop()
        inner = inner_types(current, fields_of)
        if children_done:
            expanding.discard(current)
            depth[current] = 1 + max((depth.get(t, 0) for t in inner), default=0)
        elif current not in depth and current not in expanding:
            expanding.add(current)
            stack.append((current, True))
            stack.extend((t, False) for t in inner if t not in depth and t not in expanding)
    return depth[root]


def inner_types(t: Type, fields_of: Callable[[StructType], dict[str, Type]]) -> list[Type]:
    if isinstance(t, ListType):
        return [t.item]
    if isinstance(t, DictType):
        return [t.value]
    if isinstance(t, OptionalType):
        return [t.inner]
    if isinstance(t, StructType):
        return list(fields_of(t).values())
    return []
