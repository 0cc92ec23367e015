"""Expressions at run time.

Every sub-expression that contains a call is started as soon as the values
it reads exist: the items of a list, the arguments of a call and the items
of a comprehension over a call run concurrently, and results keep source
order. Expressions without calls are evaluated inline (no task overhead).
"""

from __future__ import annotations

import asyncio
import operator
from enum import Enum
from typing import TYPE_CHECKING, Any, Awaitable, Iterable

from .. import ast
from ..builtins import BUILTINS
from ..types import BUILTIN_STRUCTS
from .errors import FlowRuntimeError
from .spans import STREAM_TO

if TYPE_CHECKING:
    from .run import RunState

_ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
               "%": operator.mod, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_CALL_NODES = (ast.Call, ast.Pipe)


async def gather_all(awaitables: Iterable[Awaitable[Any]]) -> list[Any]:
    """Run concurrently, keep order; on the first failure cancel the rest and wait for them.

    asyncio.gather alone leaves the other tasks running after a failure; a
    flow must leave no task behind.
    """
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def result_of(future: asyncio.Future) -> Any:
    """The future's result once it is done. Cancelling the caller leaves the future alone (as
    ``asyncio.shield`` would, for one future and one callback less)."""
    waiter = future.get_loop().create_future()

    def wake(_done: asyncio.Future) -> None:
        if not waiter.done():
            waiter.set_result(None)

    future.add_done_callback(wake)
    try:
        await waiter
    finally:
        future.remove_done_callback(wake)
    return future.result()


def contains_call(expr: ast.Node, memo: dict[int, bool]) -> bool:
    """Whether evaluating ``expr`` may call something that takes time.

    ``memo`` is keyed by node id, so it must live no longer than the AST
    (the Program owns it).
    """
    key = ("calls", id(expr))
    if key in memo:
        return memo[key]
    # Children before parents, with a stack: a chain of ten thousand `+` is that deep.
    stack: list[tuple[ast.Node, bool]] = [(expr, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            memo[("calls", id(node))] = isinstance(node, _CALL_NODES) or any(
                memo[("calls", id(c))] for c in node.children())
        elif ("calls", id(node)) not in memo:
            stack.append((node, True))
            stack.extend((c, False) for c in node.children())
    return memo[key]


class Unassigned(Exception):
    """A name read where no path assigned it (the checker rules this out)."""


class Evaluator:
    """Evaluates expressions of one declaration (a flow body, a block entry, a test)."""

    def __init__(self, run: "RunState", owner: ast.Decl, values: dict[str, Any] | None = None,
                 futures: dict[str, asyncio.Future] | None = None) -> None:
        self.run = run
        self.owner = owner
        self.values = values if values is not None else {}
        self.futures = futures if futures is not None else {}

    def child(self, **values: Any) -> "Evaluator":
        return Evaluator(self.run, self.owner, {**self.values, **values}, self.futures)

    async def eval(self, expr: ast.Node) -> Any:
        return await _DISPATCH[type(expr)](self, expr)

    async def eval_many(self, exprs: list[ast.Node]) -> list[Any]:
        memo = self.run.program.memo
        if sum(1 for e in exprs if contains_call(e, memo)) > 1:
            return await gather_all(self.eval(e) for e in exprs)
        return [await self.eval(e) for e in exprs]

    # ------------------------------------------------------------- atoms
    async def _literal(self, node: ast.Literal) -> Any:
        return node.value

    async def _block_string(self, node: ast.BlockString) -> Any:
        return node.value

    async def _name(self, node: ast.Name) -> Any:
        if node.version is None:
            if node.id in self.values:
                return self.values[node.id]
            future = self.futures.get(node.id)
            if future is not None:
                try:
                    return await result_of(future) if not future.done() else future.result()
                except Unassigned:
                    raise FlowRuntimeError(f"'{node.id}' has no value on this path") from None
        decl = self.run.program.lookup(node.id, node.version, within=self.owner)
        if decl is None:
            raise FlowRuntimeError(f"unknown name '{node.id}'")
        if isinstance(decl, ast.EnumDecl):
            return self.run.enum_class(decl, self.owner)
        return decl  # a bare declaration: a model, a tool in an agent's list, …

    async def _list(self, node: ast.ListExpr) -> Any:
        return await self.eval_many(node.items)

    async def _dict(self, node: ast.DictExpr) -> Any:
        values = await self.eval_many([e.value for e in node.entries])
        return {e.key: v for e, v in zip(node.entries, values)}

    async def _comprehension(self, node: ast.Comprehension) -> Any:
        items = await self.eval(node.iterable)
        if isinstance(items, dict):
            items = list(items)
        elif not isinstance(items, (list, tuple, str)):
            raise FlowRuntimeError(f"cannot loop over {type(items).__name__}")

        async def one(item: Any) -> tuple[bool, Any]:
            inner = self.child(**{node.var: item})
            if node.condition is not None and not truthy(await inner.eval(node.condition)):
                return False, None
            return True, await inner.eval(node.element)

        memo = self.run.program.memo
        if contains_call(node.element, memo) or (node.condition is not None and contains_call(node.condition, memo)):
            results = await gather_all(one(item) for item in items)
        else:
            results = [await one(item) for item in items]
        return [value for keep, value in results if keep]

    # ------------------------------------------------------------- calls
    async def _call(self, node: ast.Call) -> Any:
        site = self.run.program.memo.get(("call", id(node), id(self.owner)))
        if site is None:
            site = self._call_site(node)
        exprs, names, concurrent, decl = site
        stream = STREAM_TO.get()
        token = STREAM_TO.set(None) if stream is not None else None   # the answer streams from this call,
        try:                                                            # not from those in its arguments
            if concurrent:
                values = await gather_all(self.eval(e) for e in exprs)
            else:
                values = [await self.eval(e) for e in exprs]
        finally:
            if token is not None:
                STREAM_TO.reset(token)
        if type(decl) is _BuiltinStruct:
            return self.run.validate(BUILTIN_STRUCTS[decl.name], dict(zip(names, values)), f"{decl.name}(…)")
        if decl is None:
            return self._builtin(node.func.id, values)
        return await self.run.call(decl, names, values)

    def _call_site(self, node: ast.Call) -> tuple:
        """What a call node needs at every evaluation, found once per program: its argument
        expressions and names, whether they run concurrently, and the declaration it calls."""
        program = self.run.program
        exprs = [a.value for a in node.args]
        concurrent = sum(1 for e in exprs if contains_call(e, program.memo)) > 1
        func = node.func
        if isinstance(func, ast.Name) and func.version is None and func.id in BUILTIN_STRUCTS \
                and program.lookup(func.id, within=self.owner) is None:
            decl = _BuiltinStruct(func.id)
        else:
            decl = program.lookup(func.id, func.version, within=self.owner) if isinstance(func, ast.Name) else None
        site = (exprs, [a.name for a in node.args], concurrent, decl)
        program.memo[("call", id(node), id(self.owner))] = site
        return site

    async def _pipe(self, node: ast.Pipe) -> Any:
        base, stages = ast.pipe_chain(node)  # `x | f | g …` in a loop, however long
        if len(stages) == 1:
            values = await self.eval_many([base, *(a.value for a in node.args)])
            return await self._pipe_stage(node, values)
        value = await self.eval(base)
        for stage in stages:
            value = await self._pipe_stage(stage, [value, *await self.eval_many([a.value for a in stage.args])])
        return value

    async def _pipe_stage(self, node: ast.Pipe, values: list[Any]) -> Any:
        decl = self.run.program.lookup(node.filter, within=self.owner)
        if decl is None:
            return self._builtin(node.filter, values)
        return await self.run.call(decl, [None, *(a.name for a in node.args)], values)

    def _builtin(self, name: str, values: list[Any]) -> Any:
        builtin = BUILTINS.get(name)
        if builtin is None:
            raise FlowRuntimeError(f"unknown function '{name}'")
        args = [plain(v) for v in values]
        try:
            if name == "env":  # its value is a secret of the run (fmflow.secrets)
                return self.run.read_env(args[0] if args else None, lambda: builtin.impl(*args))
            return builtin.impl(*args)
        except FlowRuntimeError:
            raise
        except Exception as error:
            raise FlowRuntimeError(f"{name}() failed: {error}") from None

    # ------------------------------------------------------ fields, items
    async def _attribute(self, node: ast.Attribute) -> Any:
        value = await self.eval(node.value)
        if isinstance(value, type) and issubclass(value, Enum):
            return value[node.attr]
        if value is None:
            raise FlowRuntimeError(f"cannot read field '{node.attr}' of null")
        if isinstance(value, dict):
            if node.attr not in value:
                raise FlowRuntimeError(f"no field '{node.attr}' in {_short(value)}")
            return value[node.attr]
        try:
            return getattr(value, node.attr)
        except AttributeError:
            raise FlowRuntimeError(f"{type(value).__name__} has no field '{node.attr}'") from None

    async def _index(self, node: ast.Index) -> Any:
        value, index = await self.eval_many([node.value, node.index])
        try:
            return value[plain(index)]
        except IndexError:
            raise FlowRuntimeError(f"index {index} is out of range for a list of {len(value)}") from None
        except KeyError:
            raise FlowRuntimeError(f"no key {index!r} in {_short(value)}") from None
        except TypeError as error:
            raise FlowRuntimeError(f"cannot index {type(value).__name__}: {error}") from None

    # --------------------------------------------------------- operators
    async def _unary(self, node: ast.Unary) -> Any:
        value = await self.eval(node.operand)
        return (not truthy(value)) if node.op == "not" else -value

    async def _binary(self, node: ast.Binary) -> Any:
        # `a + b + …` is a chain as deep as it is long: evaluated in a loop, left to right.
        first, links = ast.binary_chain(node)
        if node.op in ("and", "or"):  # short-circuit: stop at the first false `and`, true `or`
            value = truthy(await self.eval(first))
            for link in links:
                if value == (link.op == "or"):
                    break
                value = truthy(await self.eval(link.right))
            return value
        operands = [first, *(link.right for link in links)]
        memo = self.run.program.memo
        if sum(1 for o in operands if contains_call(o, memo)) > 1:
            values = await gather_all(self.eval(o) for o in operands)
            result = values[0]
            for link, right in zip(links, values[1:]):
                result = _operate(link.op, result, right)
            return result
        result = await self.eval(first)
        for link in links:
            result = _operate(link.op, result, await self.eval(link.right))
        return result

    async def _conditional(self, node: ast.Conditional) -> Any:
        if truthy(await self.eval(node.condition)):
            return await self.eval(node.then)
        return await self.eval(node.otherwise)


class _BuiltinStruct:
    """A call site that builds a built-in struct (Doc, Message: no declaration of that name shadows it)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

_DISPATCH = {
    ast.Literal: Evaluator._literal, ast.BlockString: Evaluator._block_string, ast.Name: Evaluator._name,
    ast.ListExpr: Evaluator._list, ast.DictExpr: Evaluator._dict, ast.Comprehension: Evaluator._comprehension,
    ast.Call: Evaluator._call, ast.Pipe: Evaluator._pipe, ast.Attribute: Evaluator._attribute,
    ast.Index: Evaluator._index, ast.Unary: Evaluator._unary, ast.Binary: Evaluator._binary,
    ast.Conditional: Evaluator._conditional,
}


def _operate(op: str, left: Any, right: Any) -> Any:
    """``left op right`` for every operator but `and`/`or` (which short-circuit)."""
    if op == "==":
        return equal(left, right)
    if op == "!=":
        return not equal(left, right)
    if op in ("in", "not in"):
        found = contains(right, left)
        return found if op == "in" else not found
    try:
        return _ARITHMETIC[op](plain(left), plain(right))
    except ZeroDivisionError:
        raise FlowRuntimeError(f"division by zero in '{op}'") from None
    except TypeError as error:
        raise FlowRuntimeError(f"operator '{op}' failed: {error}") from None


# ------------------------------------------------------------------ values

def plain(value: Any) -> Any:
    """Enum members as their names (an enum value is its name as a string)."""
    return value.value if isinstance(value, Enum) else value


def truthy(value: Any) -> bool:
    return bool(plain(value))


def equal(left: Any, right: Any) -> bool:
    return plain(left) == plain(right)


def contains(container: Any, item: Any) -> bool:
    container, item = plain(container), plain(item)
    if isinstance(container, (list, tuple)):
        return any(equal(x, item) for x in container)
    if hasattr(container, "model_fields"):  # a declared type: its field names
        return item in type(container).model_fields
    try:
        return item in container
    except TypeError as error:
        raise FlowRuntimeError(f"'in' failed: {error}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
