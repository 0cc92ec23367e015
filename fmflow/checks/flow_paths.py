"""E203 and E204: flows return on every path; names are assigned once per path.

A flow body is a dataflow graph, so a name is written once on any path and
read only where it is sure to exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ast
from .context import CheckContext


@dataclass
class _Path:
    assigned: dict[str, int]  # name → line of its assignment on this path
    returned: bool = False

    def copy(self) -> "_Path":
        return _Path(dict(self.assigned), self.returned)


def check_flow_paths(ctx: CheckContext) -> None:
    for decl in ctx.module.decls:
        if isinstance(decl, ast.FlowDecl):
            _check_flow(ctx, decl)


def _check_flow(ctx: CheckContext, flow: ast.FlowDecl) -> None:
    params = {p.name for p in flow.params}
    locals_ = {n.name for n in flow.walk() if isinstance(n, ast.Assign)} - params
    path = _walk(ctx, flow, flow.body, _Path({}), params, locals_)
    if not path.returned:
        ctx.diagnostics.add(
            "E203", f"flow '{flow.name}' can end without returning a value", flow.name_span,
            "add a `return` at the end, or to every branch of the last `if` (with an `else`)")


def _walk(ctx: CheckContext, flow: ast.FlowDecl, body: list, path: _Path, params: set[str],
          locals_: set[str]) -> _Path:
    for stmt in body:
        if path.returned:
            break  # statements after a return never run
        if isinstance(stmt, ast.Assign):
            _check_reads(ctx, stmt.value, path, locals_)
            if stmt.name in params:
                ctx.diagnostics.add("E204", f"'{stmt.name}' is a parameter of flow '{flow.name}' and cannot be "
                                    "assigned", stmt.name_span, "use a new name for the new value")
            elif stmt.name in path.assigned:
                ctx.diagnostics.add("E204", f"'{stmt.name}' is already assigned on this path (line "
                                    f"{path.assigned[stmt.name]})", stmt.name_span,
                                    "each name is assigned once per path; use a new name")
            path.assigned[stmt.name] = stmt.name_span.line
        elif isinstance(stmt, ast.Return):
            _check_reads(ctx, stmt.value, path, locals_)
            path.returned = True
        elif isinstance(stmt, ast.If):
            path = _walk_if(ctx, flow, stmt, path, params, locals_)
    return path


def _walk_if(ctx, flow, stmt: ast.If, path: _Path, params, locals_) -> _Path:
    outcomes: list[_Path] = []
    for branch in stmt.branches:
        _check_reads(ctx, branch.condition, path, locals_)
        outcomes.append(_walk(ctx, flow, branch.body, path.copy(), params, locals_))
    outcomes.append(_walk(ctx, flow, stmt.orelse or [], path.copy(), params, locals_))
    continuing = [p for p in outcomes if not p.returned]
    if not continuing:
        return _Path(path.assigned, returned=True)
    # After the if, a name is certain only if every path that goes on assigned it.
    names = set.intersection(*(set(p.assigned) for p in continuing))
    return _Path({n: continuing[0].assigned[n] for n in names})


def _check_reads(ctx: CheckContext, expr: ast.Node, path: _Path, locals_: set[str]) -> None:
    for name in _reads(expr, set()):
        if name.id in locals_ and name.id not in path.assigned:
            ctx.diagnostics.add(
                "E203", f"'{name.id}' may be unassigned here", name.span,
                "assign it before this line on every path (also in each branch of an `if`, with an `else`)")


def _reads(expr: ast.Node, bound: set[str]):
    """Names an expression reads, minus comprehension variables."""
    if isinstance(expr, ast.Name):
        if expr.id not in bound and expr.version is None:
            yield expr
        return
    if isinstance(expr, ast.Comprehension):
        yield from _reads(expr.iterable, bound)
        inner = bound | {expr.var}
        yield from _reads(expr.element, inner)
        if expr.condition is not None:
            yield from _reads(expr.condition, inner)
        return
    for child in expr.children():
        yield from _reads(child, bound)
