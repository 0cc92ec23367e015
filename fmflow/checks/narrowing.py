"""Null narrowing (LANGUAGE.md §3): where a `T?` value is known not to be null, it is a `T`.

A condition tells, when it is true or when it is false, which values are not
null: `x != null` (or `null != x`) when true, `x == null` when false, a bare
`x` (null is falsy) when true, `not C` the other way round, `A and B` when
true what either tells, `A or B` when false what either tells. The checker
applies it to the arms of `if`/`elif`/`else`, to `A if C else B`, to the
right of `and`/`or`, to a comprehension's element, and after an `if` to the
statements below when every arm that goes on knows it (`if x == null {
return … }`). Names are assigned once per path and values never change, so
what is known holds for the rest of the block.

What narrows is a *path*: a name (`x`) or a name followed by fields
(`email.cc`); reading that same path again gives the narrowed type.
"""

from __future__ import annotations

from .. import ast


def path_of(expr: ast.Node) -> str | None:
    """``x`` or ``x.a.b`` as text, for a name (not a prompt version) and its fields; else None."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name) or expr.version is not None:
        return None
    parts.append(expr.id)
    return ".".join(reversed(parts))


def non_null_when(condition: ast.Node, truth: bool) -> frozenset[str]:
    """The paths known not to be null when ``condition`` evaluates to ``truth``.

    Iterative over chains of `and`/`or` (generated code writes them thousands long).
    """
    found: set[str] = set()
    stack: list[tuple[ast.Node, bool]] = [(condition, truth)]
    while stack:
        node, value = stack.pop()
        if isinstance(node, ast.Unary) and node.op == "not":
            stack.append((node.operand, not value))
        elif isinstance(node, ast.Binary) and node.op in ("and", "or"):
            if value == (node.op == "and"):  # `A and B` true, `A or B` false: both sides tell
                stack += [(node.left, value), (node.right, value)]
        elif isinstance(node, ast.Binary) and node.op in ("==", "!="):
            compared = _compared_with_null(node)
            if compared is not None and value == (node.op == "!="):
                found.add(compared)
        elif value:
            path = path_of(node)
            if path is not None:
                found.add(path)
    return frozenset(found)


def _compared_with_null(node: ast.Binary) -> str | None:
    for side, other in ((node.left, node.right), (node.right, node.left)):
        if isinstance(other, ast.Literal) and other.kind == "null":
            return path_of(side)
    return None


def always_returns(body: list) -> bool:
    """Whether running ``body`` always ends in a `return` (an `if` counts when all its arms,
    `else` included, do)."""
    for stmt in body:
        if isinstance(stmt, ast.Return):
            return True
        if isinstance(stmt, ast.If) and stmt.orelse is not None \
                and all(always_returns(b.body) for b in stmt.branches) and always_returns(stmt.orelse):
            return True
    return False
