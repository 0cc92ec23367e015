"""E301: a flow must not call itself, directly or through other flows.

A small depth-first search over the flow→flow call graph: ``fmflow check``
stays free of the networkx import (the compiler uses networkx).
"""

from __future__ import annotations

from .. import ast
from .context import CheckContext


def flow_calls(flow: ast.FlowDecl, ctx: CheckContext) -> list[tuple[ast.Name, ast.FlowDecl]]:
    """Every reference from a flow's body to another (or the same) flow."""
    found = []
    assigned = {n.name for n in flow.walk() if isinstance(n, ast.Assign)} | {p.name for p in flow.params}
    for node in flow.walk():
        if isinstance(node, ast.Name) and node.id not in assigned:
            target = ctx.lookup(node.id)
            if isinstance(target, ast.FlowDecl):
                found.append((node, target))
    return found


def check_recursion(ctx: CheckContext) -> None:
    flows = [d for d in ctx.module.decls if isinstance(d, ast.FlowDecl)]
    edges = {id(f): flow_calls(f, ctx) for f in flows}
    for flow in flows:
        for call, target in edges[id(flow)]:
            cycle = _path_back(target, flow, edges)
            if cycle is None:
                continue
            if target is flow:
                message = f"flow '{flow.name}' calls itself"
            else:
                chain = " → ".join([flow.name, *(f.name for f in cycle)])
                message = f"flow '{flow.name}' calls itself through {chain}"
            ctx.diagnostics.add("E301", message, call.span,
                                "flows form a graph without cycles; loop with a comprehension instead")


def _path_back(start: ast.FlowDecl, goal: ast.FlowDecl, edges) -> list[ast.FlowDecl] | None:
    """Flows from ``start`` back to ``goal`` (both included), or None."""
    stack = [(start, [start])]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node is goal:
            return path
        if id(node) in seen:
            continue
        seen.add(id(node))
        for _call, nxt in edges.get(id(node), ()):
            stack.append((nxt, [*path, nxt]))
    return None
