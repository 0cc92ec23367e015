"""E301: a recursive cycle of flows in which no flow can ever return.

A flow may call itself, directly or through other flows: that is how a
loop is written (draft → critique → revise until good). What cannot work is
a cycle with no way out, where every path through every flow of the cycle
calls the cycle again before it returns.

The rule, as a least fixed point: a flow *can return* when some path
through its body reaches a ``return`` while every flow it must call on the
way can return. A call that may not happen does not count: the arm of an
``if`` not taken, the side of ``a if c else b`` not chosen, the right of
``and``/``or``, a comprehension's items (its list may be empty), and a
flow an agent may choose as a tool. The flows of a cycle that cannot return
are reported, each at its first call into the cycle.

A small depth-first search and a fixed point over the flow→flow calls:
``fmflow check`` stays free of the networkx import (the compiler uses networkx).
"""

from __future__ import annotations

from .. import ast
from .context import CheckContext

_HELP = ("a flow may call itself, but some path must return without recursing: "
         "put a way out before the call, e.g. `if round >= 3 { return draft }`")


def flow_calls(flow: ast.FlowDecl, ctx: CheckContext) -> list[tuple[ast.Name, ast.FlowDecl]]:
    """Every call from a flow's body to a flow (itself included), in source order."""
    found = []
    local = _local_names(flow)
    for node in ctx.nodes(flow):
        target = _called_flow(node, local, ctx)
        if target is not None:
            found.append((node.func, target))
    return found


def check_recursion(ctx: CheckContext) -> None:
    flows = [d for d in ctx.module.decls if isinstance(d, ast.FlowDecl)]
    edges = {id(f): flow_calls(f, ctx) for f in flows}
    returning = _flows_that_can_return(flows, edges, ctx)
    for flow in flows:
        if id(flow) in returning:
            continue
        for call, target in edges[id(flow)]:
            cycle = _path_back(target, flow, edges, returning)
            if cycle is None:
                continue
            if target is flow:
                message = f"flow '{flow.name}' calls itself on every path, so it can never return"
            else:
                chain = cycle_text([flow.name, *(f.name for f in cycle)])
                message = f"flow '{flow.name}' calls itself through {chain} on every path, so it can never return"
            ctx.diagnostics.add("E301", message, call.span, _HELP)
            break  # one report per flow: its first call into the cycle


def cycle_text(names: list[str], most: int = 8) -> str:
    """``a → b → a``; a long cycle keeps its first flows and its end."""
    if len(names) > most:
        names = [*names[:most - 2], "…", *names[-2:]]
    return " → ".join(names)


# ------------------------------------------------------------ can it return?

def _flows_that_can_return(flows: list[ast.FlowDecl], edges, ctx: CheckContext) -> set[int]:
    """Ids of the flows that can return; flows of other files are taken to (they were checked there).

    A worklist: a flow is looked at again only when a flow it calls is found to return.
    """
    callers: dict[int, list[ast.FlowDecl]] = {}
    for flow in flows:
        for _call, target in edges[id(flow)]:
            callers.setdefault(id(target), []).append(flow)
    returning: set[int] = set()
    own = {id(flow) for flow in flows}
    pending = list(reversed(flows))
    while pending:
        flow = pending.pop()
        if id(flow) not in returning and _FlowPaths(flow, ctx, own, returning).can_return():
            returning.add(id(flow))
            pending.extend(c for c in callers.get(id(flow), ()) if id(c) not in returning)
    return returning


class _FlowPaths:
    """Whether one flow has a path to a `return` that calls only flows known to return."""

    def __init__(self, flow: ast.FlowDecl, ctx: CheckContext, own: set[int], returning: set[int]) -> None:
        self.flow, self.ctx, self.own, self.returning = flow, ctx, own, returning
        self.local = _local_names(flow)

    def can_return(self) -> bool:
        returns, _falls_through = self._block(self.flow.body)
        return returns

    def _block(self, body: list) -> tuple[bool, bool]:
        """(a clean path returns inside it, a clean path reaches its end), entered cleanly."""
        returns = False
        for stmt in body:
            if isinstance(stmt, ast.Assign):
                if not self._avoidable(stmt.value):
                    return returns, False
            elif isinstance(stmt, ast.Return):
                return returns or self._avoidable(stmt.value), False
            elif isinstance(stmt, ast.If):
                arm_returns, falls_through = self._if(stmt)
                returns = returns or arm_returns
                if not falls_through:
                    return returns, False
        return returns, True

    def _if(self, stmt: ast.If) -> tuple[bool, bool]:
        returns = falls_through = False
        for branch in stmt.branches:
            if not self._avoidable(branch.condition):
                return returns, falls_through  # later arms are reached only through this condition
            arm = self._block(branch.body)
            returns, falls_through = returns or arm[0], falls_through or arm[1]
        arm = self._block(stmt.orelse or [])
        return returns or arm[0], falls_through or arm[1]

    def _avoidable(self, expr: ast.Node) -> bool:
        """Whether ``expr`` can be evaluated without calling a flow that cannot return.

        Only the parts every evaluation reaches count: the condition of
        ``a if c else b`` and one of its sides, the first operand of ``and``/``or``
        (the rest may be short-circuited), a comprehension's list (it may be empty).
        """
        stack = [expr]
        while stack:
            node = stack.pop()
            target = _called_flow(node, self.local, self.ctx)
            if target is not None and id(target) in self.own and id(target) not in self.returning:
                return False
            if isinstance(node, ast.Conditional):
                # Recursion here is bounded by the nesting limit (fmflow.nesting): a level per `if … else`.
                if not (self._avoidable(node.then) or self._avoidable(node.otherwise)):
                    return False
                stack.append(node.condition)
            elif isinstance(node, ast.Binary) and node.op in ("and", "or"):
                stack.append(ast.binary_chain(node)[0])
            elif isinstance(node, ast.Comprehension):
                stack.append(node.iterable)
            else:
                stack.extend(node.children())
        return True


# ------------------------------------------------------------------ helpers

def _local_names(flow: ast.FlowDecl) -> set[str]:
    return ast.assigned_names(flow.body) | {p.name for p in flow.params}


def _called_flow(node: ast.Node, local: set[str], ctx: CheckContext) -> ast.FlowDecl | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in local:
        target = ctx.lookup(node.func.id)
        if isinstance(target, ast.FlowDecl):
            return target
    return None


def _path_back(start: ast.FlowDecl, goal: ast.FlowDecl, edges, returning: set[int]) -> list[ast.FlowDecl] | None:
    """The shortest chain of calls from ``start`` back to ``goal`` (both included) through flows
    that cannot return, or None. A breadth-first search with parent links."""
    if id(start) in returning:
        return None
    parent: dict[int, ast.FlowDecl | None] = {id(start): None}
    queue, head = [start], 0
    while head < len(queue):
        node = queue[head]
        head += 1
        if node is goal:
            path = [node]
            while parent[id(path[-1])] is not None:
                path.append(parent[id(path[-1])])
            return path[::-1]
        for _call, nxt in edges.get(id(node), ()):
            if id(nxt) not in parent and id(nxt) not in returning:
                parent[id(nxt)] = node
                queue.append(nxt)
    return None
