"""E203 and E204: flows return on every path; names are assigned once per path.

A flow body is a dataflow graph, so a name is written once on any path and
read only where it is sure to exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import ast
from .context import CheckContext


@dataclass
class _Path:
    """What is known at one point of a flow, over every way of getting there."""

    assigned: dict[str, int]  # certainly assigned: name → line of the assignment
    maybe: dict[str, int] = field(default_factory=dict)  # assigned on some of the ways
    returned: bool = False

    def copy(self) -> "_Path":
        return _Path(dict(self.assigned), dict(self.maybe), self.returned)


@dataclass
class _Flow:
    decl: ast.FlowDecl
    params: set[str]
    locals: set[str]  # every name the flow assigns somewhere


def check_flow_paths(ctx: CheckContext) -> None:
    for decl in ctx.module.decls:
        if isinstance(decl, ast.FlowDecl):
            params = {p.name for p in decl.params}
            # Names that are declarations are E102 when assigned; reads of them are calls.
            assigned = {name for name in ast.assigned_names(decl.body) if ctx.lookup(name) is None}
            flow = _Flow(decl, params, assigned - params)
            path = _walk(ctx, flow, decl.body, _Path({}))
            if not path.returned:
                ctx.diagnostics.add(
                    "E203", f"flow '{decl.name}' can end without returning a value", decl.name_span,
                    "add a `return` at the end, or to every branch of the last `if` (with an `else`)")


def _walk(ctx: CheckContext, flow: _Flow, body: list, path: _Path) -> _Path:
    for stmt in body:
        if path.returned:
            break  # statements after a return never run
        if isinstance(stmt, ast.Assign):
            _check_reads(ctx, flow, stmt.value, path)
            _check_assignment(ctx, flow, stmt, path)
            path.assigned[stmt.name] = path.maybe[stmt.name] = stmt.name_span.line
        elif isinstance(stmt, ast.Return):
            _check_reads(ctx, flow, stmt.value, path)
            path.returned = True
        elif isinstance(stmt, ast.If):
            path = _walk_if(ctx, flow, stmt, path)
    return path


def _check_assignment(ctx: CheckContext, flow: _Flow, stmt: ast.Assign, path: _Path) -> None:
    name = stmt.name
    if name in flow.params:
        ctx.diagnostics.add("E204", f"'{name}' is a parameter of flow '{flow.decl.name}' and cannot be assigned",
                            stmt.name_span, "use a new name for the new value")
    elif name in path.assigned:
        ctx.diagnostics.add("E204", f"'{name}' is already assigned on this path (line {path.assigned[name]})",
                            stmt.name_span, "each name is assigned once per path; use a new name")
    elif name in path.maybe:
        ctx.diagnostics.add("E204", f"'{name}' may already be assigned on this path (line {path.maybe[name]})",
                            stmt.name_span, "each name is assigned once per path; assign it in one `if` "
                            "with `elif`/`else` arms, or use a new name")


def _walk_if(ctx: CheckContext, flow: _Flow, stmt: ast.If, path: _Path) -> _Path:
    outcomes: list[_Path] = []
    for branch in stmt.branches:
        _check_reads(ctx, flow, branch.condition, path)
        outcomes.append(_walk(ctx, flow, branch.body, path.copy()))
    outcomes.append(_walk(ctx, flow, stmt.orelse or [], path.copy()))
    continuing = [p for p in outcomes if not p.returned]
    if not continuing:
        return _Path(path.assigned, path.maybe, returned=True)
    # After the if, a name is certain only if every way that goes on assigned it.
    certain = set.intersection(*(set(p.assigned) for p in continuing))
    maybe: dict[str, int] = {}
    for p in continuing:
        for name, line in p.maybe.items():
            maybe.setdefault(name, line)
    return _Path({n: continuing[0].assigned[n] for n in certain}, maybe)


def _check_reads(ctx: CheckContext, flow: _Flow, expr: ast.Node, path: _Path) -> None:
    for name in (n for n in ast.read_names(expr) if n.version is None):
        if name.id not in flow.locals or name.id in path.assigned:
            continue
        if name.id in path.maybe:
            ctx.diagnostics.add(
                "E203", f"'{name.id}' may be unassigned here", name.span,
                "assign it on every path before this line (in each arm of the `if`, with an `else`)")
        else:
            ctx.diagnostics.add("E203", f"'{name.id}' is used before it is assigned", name.span,
                                "move the assignment above this line")
