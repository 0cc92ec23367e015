"""Runs a flow body as a dataflow graph.

Every statement of a block becomes a task at once; a statement waits only
for the names it reads (each assigned name is a future), so independent
calls run at the same time. A block where each statement can do nothing
before the one above it ends (``runs_in_order``: a chain of steps) runs
them one after another instead, which loses no concurrency and saves a task
per statement. Two things order statements beyond their data:

- an ``if`` runs only its taken arm, and its arm's statements start when
  the condition is known;
- a statement after an ``if`` that may ``return`` waits for that ``if``'s
  outcome, and does not run at all when the flow returned inside it.

The checker guarantees the rest: every read name is assigned above on every
path (E203), once (E204), and every path returns (E203).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .. import ast
from .errors import FlowRuntimeError
from .evaluate import Evaluator, Unassigned, contains_call, gather_all, result_of, truthy
from .spans import CURRENT_SPAN, STREAM_TO

if TYPE_CHECKING:
    from .run import RunState

_CALLS = (ast.Call, ast.Pipe)


def assigned_names(flow: ast.FlowDecl, memo: dict) -> frozenset[str]:
    key = ("assigned", id(flow))
    if key not in memo:
        memo[key] = frozenset(n.name for n in flow.walk() if isinstance(n, ast.Assign))
    return memo[key]


def final_statements(flow: ast.FlowDecl, memo: dict) -> frozenset[int]:
    """Ids of the statements that compute a flow's answer directly with one call."""
    key = ("final", id(flow))
    if key not in memo:
        returns = [n for n in flow.walk() if isinstance(n, ast.Return)]
        names = {r.value.id for r in returns if isinstance(r.value, ast.Name)}
        found = {id(r) for r in returns if isinstance(r.value, (ast.Call, ast.Pipe))}
        found |= {id(a) for a in flow.walk() if isinstance(a, ast.Assign) and a.name in names
                  and isinstance(a.value, ast.Call)}
        memo[key] = frozenset(found)
    return memo[key]


def runs_in_order(body: list, memo: dict) -> bool:
    """Whether a block loses no concurrency when its statements run one after another.

    True when every statement but the first starts by waiting for the one
    before it: it reads the name the previous statement assigns, and nothing
    in it can start earlier (any call in it is its outermost expression,
    with arguments that call nothing). A chain of steps, the commonest body,
    then runs without a task per statement.
    """
    key = ("in order", id(body))
    if key not in memo:
        memo[key] = all(isinstance(s, (ast.Assign, ast.Return)) for s in body) and all(
            isinstance(before, ast.Assign) and _waits_for(stmt.value, before.name, memo)
            for before, stmt in zip(body, body[1:]))
    return memo[key]


def _waits_for(expr: ast.Node, name: str, memo: dict) -> bool:
    inner = [a.value for a in expr.args] if isinstance(expr, _CALLS) else [expr]
    if isinstance(expr, ast.Pipe):
        inner.append(expr.value)
    if any(contains_call(e, memo) for e in inner):
        return False
    return any(isinstance(n, ast.Name) and n.id == name and n.version is None for e in inner for n in e.walk())


def may_return(stmt: ast.Node, memo: dict) -> bool:
    key = ("returns", id(stmt))
    if key not in memo:
        memo[key] = any(isinstance(n, ast.Return) for n in stmt.walk())
    return memo[key]


async def _done(future: asyncio.Future) -> Any:
    return future.result()


class FlowExecution:
    """One call of one flow."""

    def __init__(self, run: "RunState", flow: ast.FlowDecl, inputs: dict[str, Any], span_id: str | None,
                 stream_to=None) -> None:
        self.run = run
        self.flow = flow
        self.span_id = span_id
        # The statements whose prompt call gives the final answer: a `return p(…)`,
        # or the assignments of the name a `return x` gives back.
        self.stream_to = stream_to
        self.streamed = final_statements(flow, run.program.memo) if stream_to is not None else frozenset()
        loop = asyncio.get_running_loop()
        self.futures: dict[str, asyncio.Future] = {name: loop.create_future()
                                                   for name in assigned_names(flow, run.program.memo)}
        self.evaluator = Evaluator(run, flow, dict(inputs), self.futures)
        self.result: Any = None
        self.returned = False

    async def execute(self) -> Any:
        try:
            returned = await self._block(self.flow.body)
        finally:
            for future in self.futures.values():  # nobody may wait for a value that never comes
                if not future.done():
                    future.set_exception(Unassigned())
                    future.exception()  # marks it retrieved: on a checked flow nobody reads it
        if not returned:
            raise FlowRuntimeError(f"flow '{self.flow.name}' ended without returning a value")
        return self.result

    async def _block(self, body: list) -> bool:
        """Run a block; True when the flow returned inside it."""
        if len(body) == 1 or runs_in_order(body, self.run.program.memo):   # no task per statement
            for stmt in body:
                if await self._statement(stmt, None):
                    return True
            return False
        gate: asyncio.Future | None = None  # outcome of the last `if` that may return
        tasks = []
        for stmt in body:
            task = asyncio.ensure_future(self._statement(stmt, gate))
            tasks.append(task)
            if isinstance(stmt, ast.Return):
                break
            if isinstance(stmt, ast.If) and may_return(stmt, self.run.program.memo):
                gate = task
        outcomes = await gather_all(tasks)
        return any(outcomes)

    async def _statement(self, stmt: ast.Node, gate: asyncio.Future | None) -> bool:
        """Run one statement; True when the flow has returned (in it, or before it)."""
        if gate is not None and await (result_of(gate) if not gate.done() else _done(gate)):
            return True  # skipped: the flow returned before it, and later statements must know
        # Only this statement streams; reset after it, because a one-statement block runs in
        # its caller's task, whose context outlives the run.
        stream = STREAM_TO.set(self.stream_to) if id(stmt) in self.streamed else None
        try:
            if isinstance(stmt, ast.Assign):
                await self._assign(stmt)
                return False
            if isinstance(stmt, ast.Return):
                return await self._return(stmt)
            return await self._if(stmt)
        except FlowRuntimeError as error:
            raise error.located(self.flow.name, stmt.span.line, self.run.program.context_of(self.flow).path)
        finally:
            if stream is not None:
                STREAM_TO.reset(stream)

    async def _assign(self, stmt: ast.Assign) -> None:
        span = self.run.trace_start("assign", stmt.name, self.span_id, stmt.span.line)
        token = CURRENT_SPAN.set(span.id) if span is not None else None
        try:
            value = await self.evaluator.eval(stmt.value)
        except BaseException as error:
            self.run.trace_end(span, error=error)
            raise
        finally:
            if token is not None:
                CURRENT_SPAN.reset(token)
        self.run.trace_end(span, output=value)
        self.futures[stmt.name].set_result(value)

    async def _return(self, stmt: ast.Return) -> bool:
        span = self.run.trace_start("return", "return", self.span_id, stmt.span.line)
        token = CURRENT_SPAN.set(span.id) if span is not None else None
        try:
            value = await self.evaluator.eval(stmt.value)
        except BaseException as error:
            self.run.trace_end(span, error=error)
            raise
        finally:
            if token is not None:
                CURRENT_SPAN.reset(token)
        _params, returns = self.run.program.signature(self.flow)
        try:
            value = self.run.validate(returns, value, lambda: f"the result of flow '{self.flow.name}'")
        except FlowRuntimeError as error:
            self.run.trace_end(span, error=error)
            raise
        self.run.trace_end(span, output=value)
        self.result, self.returned = value, True
        return True

    async def _if(self, stmt: ast.If) -> bool:
        for branch in stmt.branches:
            span = self.run.trace_start("branch", "if", self.span_id, branch.span.line)
            token = CURRENT_SPAN.set(span.id) if span is not None else None
            try:
                taken = truthy(await self.evaluator.eval(branch.condition))
            except BaseException as error:
                self.run.trace_end(span, error=error)
                raise
            finally:
                if token is not None:
                    CURRENT_SPAN.reset(token)
            self.run.trace_end(span, output=taken)
            if taken:
                return await self._block(branch.body)
        return await self._block(stmt.orelse or [])
