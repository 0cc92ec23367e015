"""The Jinja sandbox prompt templates render in: read-only values, bounded time and size.

Templates come from .fmflow files, so they render in Jinja's
ImmutableSandboxedEnvironment: a template reads its variables but cannot
reach Python internals or change a flow's values (``{{ r.tags.append("x") }}``
and ``{{ d.update(…) }}`` are errors), and of a value of a declared type it
sees the fields only, not pydantic's methods.

A render is bounded (``RenderLimits``): its time, its output, the size of any
value it builds and its loop iterations. A limit on ``range`` alone is beaten
by nesting loops, so the budget is checked where a template spends time or
memory: every loop iteration, call, filter, ``{{ … }}`` and the operators
that build values (``* ** + %``); an operation that would build a value over
the size limit is refused before it runs.
"""

from __future__ import annotations

import math
import re
import time
import weakref
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any, Callable

from jinja2 import Environment, nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer
from pydantic import BaseModel

LOOP_GUARD = "fmflow_loop"   # the filter every `{% for %}` iterable goes through
SIZE_GUARD = "fmflow_sized"  # the filter every `a ~ b` goes through
# Widths in printf and format specs (`%9999999s`, `{:>9999999}`) that would pad a value past any limit.
_HUGE_WIDTH = re.compile(r"%[-#0 +]*\d{7,}|%[-#0 +]*\d*\.\d{7,}|\{[^{}]*:[^{}]*\d{7,}[^{}]*\}")
_PADDING = {"center", "ljust", "rjust", "zfill", "expandtabs", "indent"}
_JINJA_STATE = (Context, nodes.EvalContext, Environment)   # what pass_context & co. give a filter first


@dataclass(frozen=True)
class RenderLimits:
    seconds: float = 3.0           # wall time of one render
    chars: int = 1_000_000         # output, and any single value built while rendering
    iterations: int = 1_000_000    # loop iterations of one render, all loops together


class RenderLimitError(Exception):
    """A render went over one of its limits; the message says which."""


class _Budget:
    __slots__ = ("limits", "deadline", "iterations")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.iterations = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimitError(f"rendering took longer than {self.limits.seconds:g}s")

    def check(self, value: Any, what: str) -> None:
        self.count(size_of(value, self.limits.chars), what)

    def count(self, size: int, what: str) -> None:
        if size > self.limits.chars:
            raise RenderLimitError(f"{what} would be larger than the limit of {self.limits.chars:,} characters "
                                   f"({size:,})")


CURRENT_BUDGET: ContextVar[_Budget | None] = ContextVar("fmflow_render_budget", default=None)
_UNTIMED = RenderLimits(seconds=math.inf)   # Jinja folds constants at compile time, outside a render


def budget() -> _Budget:
    return CURRENT_BUDGET.get() or _Budget(_UNTIMED)


def start_budget(limits: RenderLimits):
    """Make ``limits`` apply to the render about to run; returns the token for ``end_budget``."""
    return CURRENT_BUDGET.set(_Budget(limits))


def end_budget(token) -> None:
    CURRENT_BUDGET.reset(token)


def size_of(value: Any, limit: int = 1 << 62) -> int:
    """Characters of text plus items of containers, through nested lists and dicts
    (a list of a million references to one long string is big); stops counting past ``limit``."""
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, (list, tuple, dict)):
        return 0
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, (list, tuple)):
            total += len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            total += len(item)
            stack.extend(item)
            stack.extend(item.values())
    return total


class LimitedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.globals["range"] = _range
        self.globals["lipsum"] = _lipsum
        self.add_filters(dict(self.filters))
        self.filters[LOOP_GUARD] = _loop_guard
        self.filters[SIZE_GUARD] = _size_guard

    def add_filters(self, filters: dict[str, Callable[..., Any]]) -> None:
        """Install filters, each checked against the render's budget."""
        self.filters.update({name: _guarded_filter(name, f) for name, f in filters.items()})

    def compile_guarded(self, source: str):
        """A Template whose loops and `~` count against the budget (see _Guards)."""
        return self.from_string(_Guards().visit(self.parse(source)))

    # -- reading values ---------------------------------------------------

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, BaseModel):   # fields only: no model_copy, model_rebuild, …
            return _field_attribute(type(obj), attr) == attr
        return super().is_safe_attribute(obj, attr, value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, BaseModel):   # a field by its own name, also one pydantic reserves
            name = _field_attribute(type(obj), attribute)
            if name is not None:
                return getattr(obj, name)
            if hasattr(obj, attribute):   # a method or an internal: refused, saying so
                return self.unsafe_undefined(obj, attribute)
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, BaseModel) and isinstance(argument, str):
            return self.getattr(obj, argument)
        return super().getitem(obj, argument)

    # -- spending time and memory ----------------------------------------

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        spent = budget()
        spent.tick()
        target = getattr(__obj, "__wrapped__", __obj)   # the sandbox hands out str.format wrapped
        _refuse_amplifying_call(spent, getattr(target, "__name__", ""), getattr(target, "__self__", None),
                                args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        spent.check(result, "a value")
        return result

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        spent = budget()
        spent.tick()
        _refuse_amplifying_binop(spent, operator, left, right)
        result = super().call_binop(context, operator, left, right)
        spent.check(result, "a value")
        return result


class _Guards(NodeTransformer):
    """`{% for x in ITER %}` → `{% for x in ITER | fmflow_loop %}`; `a ~ b`, `[…]`, `{…}` and `(…)`
    → `(…) | fmflow_sized`."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, LOOP_GUARD, [], [], None, None, lineno=node.iter.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        return self._sized(node)

    # Literals nest values: `[x, x]` forty times over is small in memory and huge when printed.
    def visit_List(self, node: nodes.List) -> nodes.Filter:
        return self._sized(node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Filter:
        return self._sized(node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        return self._sized(node) if node.ctx == "load" else self.generic_visit(node) or node

    def _sized(self, node: nodes.Expr) -> nodes.Filter:
        self.generic_visit(node)
        return nodes.Filter(node, SIZE_GUARD, [], [], None, None, lineno=node.lineno)


def _size_guard(value: Any) -> Any:
    spent = budget()
    spent.tick()
    spent.check(value, "a value")
    return value


def _loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
    spent = budget()
    limit = spent.limits.iterations
    for item in iterable:
        spent.iterations += 1
        if spent.iterations > limit:
            raise RenderLimitError(f"loops ran more than {limit:,} times")
        if not spent.iterations & 63:
            spent.tick()
        yield item


def _guarded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(function)   # keeps Jinja's pass_context / pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        spent = budget()
        spent.tick()
        _refuse_amplifying_call(spent, name, None, args, kwargs)
        result = function(*args, **kwargs)
        if not isinstance(result, Iterator):   # a lazy result is counted where it is consumed
            spent.check(result, f"the result of filter '{name}'")
        return result

    return guarded


def _refuse_amplifying_call(spent: _Budget, name: str, bound: Any, args: tuple, kwargs: dict) -> None:
    """Refuse, before it runs, a call that would build a value over the size limit:
    padding to a huge width, `replace` or `join` multiplying text, huge format widths.
    ``bound`` is the string a method is called on (`"x".center(…)`); a filter gets
    its value as the first argument instead."""
    values = [a for a in (*args, *kwargs.values()) if not isinstance(a, _JINJA_STATE)]
    operands = [bound, *values] if isinstance(bound, str) else values
    limit = spent.limits.chars
    if name == "indent" and operands and isinstance(operands[0], str):
        width = next((v for v in values[1:2] if isinstance(v, (int, str)) and not isinstance(v, bool)), 4)
        width = len(width) if isinstance(width, str) else width
        spent.count(len(operands[0]) + width * (operands[0].count("\n") + 1), "'indent'")
    elif name in _PADDING:
        spent.count(max((v for v in values if isinstance(v, int) and not isinstance(v, bool)), default=0),
                    f"'{name}'")
    elif name == "replace" and len(operands) >= 3 and all(isinstance(x, str) for x in operands[:3]):
        text, old, new = operands[:3]
        spent.count(len(text) + (text.count(old) if old else len(text) + 1) * len(new), "'replace'")
    elif name == "join" and values:
        items, sep = (values[0], bound) if isinstance(bound, str) else (values[0], values[1] if len(values) > 1 else "")
        if isinstance(items, (list, tuple)) and isinstance(sep, str):
            spent.count(size_of(items, limit) + len(sep) * len(items), "'join'")
    elif name in ("format", "format_map"):
        for candidate in (bound, *values[:1]):
            if isinstance(candidate, str) and _HUGE_WIDTH.search(candidate):
                raise RenderLimitError(f"a format width in {candidate[:40]!r} is over the limit of "
                                       f"{spent.limits.chars:,}")


def _refuse_amplifying_binop(spent: _Budget, operator: str, left: Any, right: Any) -> None:
    limit = spent.limits.chars
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                spent.count(min(size_of(seq, limit), limit + 1) * max(n, 0), "'*'")
    elif operator == "+":
        if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            spent.count(size_of(left, limit) + size_of(right, limit), "'+'")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            # digits of the result: a big power is slow to compute and to print
            spent.count(int(right * math.log10(abs(left))) + 1, "'**'")
    elif operator == "%" and isinstance(left, str) and _HUGE_WIDTH.search(left):
        raise RenderLimitError(f"a format width in {left[:40]!r} is over the limit of {spent.limits.chars:,}")


def _range(*args: int) -> range:
    budget().tick()
    return safe_range(*args)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 - Jinja's names
    return generate_lorem_ipsum(n=_clamp(n, 100), html=html, min=_clamp(min, 1000), max=_clamp(max, 1000))


def _clamp(value: Any, upper: int) -> Any:
    return min(value, upper) if isinstance(value, int) else value


# Weak: a model class goes with the program that made it (a server or an editor reloads programs).
_FIELDS: weakref.WeakKeyDictionary[type, dict[str, str]] = weakref.WeakKeyDictionary()


def _field_attribute(model: type[BaseModel], name: str) -> str | None:
    """The attribute of field ``name`` (its own name or its JSON alias) of a model, or None."""
    fields = _FIELDS.get(model)
    if fields is None:
        fields = {}
        for attribute, info in model.model_fields.items():
            fields[attribute] = attribute
            if info.alias:
                fields[info.alias] = attribute
        _FIELDS[model] = fields
    return fields.get(name)
