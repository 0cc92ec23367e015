"""Built-in functions: each one's signature beside its implementation.

The checker reads ``typing`` to type a call; the runtime calls ``impl``.
A typing function gets the argument types and returns the result type, or
a string that says what is wrong with the arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from .types import (BOOL, FLOAT, INT, JSON, STR, DictType, EnumType, ListType, Prim,
                    StructType, Type, Unknown, is_assignable, is_dynamic, is_numeric, join, strip_optional)

TypingRule = Callable[[list[Type]], "Type | str"]


@dataclass(frozen=True)
class Builtin:
    name: str
    signature: str
    min_args: int
    max_args: int
    typing: TypingRule
    impl: Callable[..., Any]
    doc: str


def _is_sized(t: Type) -> bool:
    return is_dynamic(t) or t == STR or isinstance(t, (ListType, DictType, StructType))


def _len(args: list[Type]) -> Type | str:
    return INT if _is_sized(args[0]) else f"len() needs a str, list or dict, got {args[0]}"


def _convert(target: Type) -> TypingRule:
    def rule(args: list[Type]) -> Type | str:
        source = strip_optional(args[0])
        if target == STR or is_dynamic(source) or source in (STR, INT, FLOAT, BOOL):
            return target
        return f"{target}() cannot convert {args[0]}"
    return rule


def _text(args: list[Type]) -> Type | str:
    return STR if is_assignable(args[0], STR) else f"expected str, got {args[0]}"


def _join(args: list[Type]) -> Type | str:
    if not (is_assignable(args[0], ListType(STR)) or is_dynamic(args[0])):
        return f"join() needs a list[str] first, got {args[0]}"
    if len(args) > 1 and not is_assignable(args[1], STR):
        return f"join() separator must be str, got {args[1]}"
    return STR


def _split(args: list[Type]) -> Type | str:
    if not all(is_assignable(a, STR) for a in args):
        return f"split() takes str arguments, got {', '.join(map(str, args))}"
    return ListType(STR)


def _range(args: list[Type]) -> Type | str:
    if not all(is_assignable(a, INT) for a in args):
        return f"range() takes int arguments, got {', '.join(map(str, args))}"
    return ListType(INT)


def _min_max(name: str) -> TypingRule:
    def rule(args: list[Type]) -> Type | str:
        if len(args) == 1:
            items = args[0]
            if is_dynamic(items):
                return JSON
            if not isinstance(items, ListType):
                return f"{name}() of one argument needs a list, got {items}"
            item = items.item
        else:
            item = args[0]
            for other in args[1:]:
                joined = join(item, other)
                if joined is None:
                    return f"{name}() arguments have different types: {item} and {other}"
                item = joined
        if is_dynamic(item) or is_numeric(item) or item == STR:
            return item
        return f"{name}() compares numbers or strings, got {item}"
    return rule


def _sum(args: list[Type]) -> Type | str:
    items = args[0]
    if is_dynamic(items):
        return JSON
    if isinstance(items, ListType) and (is_numeric(items.item) or is_dynamic(items.item)):
        return items.item if is_numeric(items.item) else FLOAT
    return f"sum() needs a list of numbers, got {items}"


def _keys(args: list[Type]) -> Type | str:
    d = strip_optional(args[0])
    if is_dynamic(d) or isinstance(d, (DictType, StructType)):
        return ListType(STR)
    return f"keys() needs a dict, got {args[0]}"


def _values(args: list[Type]) -> Type | str:
    d = strip_optional(args[0])
    if isinstance(d, DictType):
        return ListType(d.value)
    if is_dynamic(d) or isinstance(d, StructType):
        return ListType(JSON)
    return f"values() needs a dict, got {args[0]}"


def _env(args: list[Type]) -> Type | str:
    if not is_assignable(args[0], STR):
        return f"env() takes the variable's name as a str, got {args[0]}"
    if len(args) == 1:
        return STR
    default = args[1]
    if isinstance(default, (Prim, EnumType, Unknown)) or isinstance(default, (ListType, DictType)):
        return default
    return f"env() default must be a plain value, got {default}"


def _env_impl(name: str, default: Any = None) -> Any:
    """Read an environment variable, converted to the default's type."""
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise LookupError(f"environment variable {name} is not set and has no default")
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def _to_str(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in [
        Builtin("len", "len(value: str | list | dict) -> int", 1, 1, _len, len, "Number of items or characters."),
        Builtin("str", "str(value) -> str", 1, 1, _convert(STR), _to_str, "Text form of a value."),
        Builtin("int", "int(value: str | float | bool) -> int", 1, 1, _convert(INT), int, "Whole number from a value."),
        Builtin("float", "float(value: str | int) -> float", 1, 1, _convert(FLOAT), float, "Number from a value."),
        Builtin("join", "join(items: list[str], separator: str = \"\") -> str", 1, 2, _join,
                lambda items, sep="": sep.join(items), "Items joined with a separator."),
        Builtin("split", "split(text: str, separator: str?) -> list[str]", 1, 2, _split,
                lambda text, sep=None: text.split(sep), "Text split on a separator (whitespace by default)."),
        Builtin("lower", "lower(text: str) -> str", 1, 1, _text, str.lower, "Lower-case text."),
        Builtin("upper", "upper(text: str) -> str", 1, 1, _text, str.upper, "Upper-case text."),
        Builtin("strip", "strip(text: str) -> str", 1, 1, _text, str.strip, "Text without surrounding whitespace."),
        Builtin("range", "range(stop: int) | range(start: int, stop: int) -> list[int]", 1, 2, _range,
                lambda *a: list(range(*a)), "Whole numbers from start (0) up to stop."),
        Builtin("min", "min(items: list) | min(a, b, …)", 1, 16, _min_max("min"),
                lambda *a: min(*a), "Smallest item."),
        Builtin("max", "max(items: list) | max(a, b, …)", 1, 16, _min_max("max"),
                lambda *a: max(*a), "Largest item."),
        Builtin("sum", "sum(items: list[int | float])", 1, 1, _sum, sum, "Total of numbers."),
        Builtin("keys", "keys(d: dict) -> list[str]", 1, 1, _keys, lambda d: list(d.keys()), "Keys of a dict."),
        Builtin("values", "values(d: dict[T]) -> list[T]", 1, 1, _values,
                lambda d: list(d.values()), "Values of a dict."),
        Builtin("env", "env(name: str, default?)", 1, 2, _env, _env_impl,
                "An environment variable, read when the flow runs."),
    ]
}

# Names that only have a meaning in one place: python(...) as a tool's
# implementation, the on_fail policies as a prompt's on_fail value.
IMPLEMENTATION_FUNCTIONS = ("python",)
ON_FAIL_POLICIES = {"reask": 1, "retry": 1, "default": 1, "fallback": 0, "raise": 0}
