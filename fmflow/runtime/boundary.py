"""What may enter a run: values fmflow's types can hold, with valid text.

Values come into a run from outside — model replies, tool and filter
results, inputs, environment variables — and leave it through traces, the
cache, JSON output and other tools. At every boundary:

- text is valid Unicode: a lone surrogate (a provider's ``"\\ud800"``, an
  undecodable byte in an environment variable) becomes U+FFFD, so a trace,
  the cache and stdout can always encode it;
- a value is what the types can hold: null, booleans, finite numbers,
  strings, lists, dicts with string keys, values of declared types and
  enums. A cycle, NaN or an arbitrary Python object is refused with the
  place where it sits.

``admit`` returns a copy: nothing outside the run (a tool keeping a
reference, or mutating its argument) can change a value once a flow has it.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (a split pair is joined)."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class Unrepresentable(Exception):
    """A value no fmflow type can hold; the message says what and where."""

    def __init__(self, reason: str, path: str = "") -> None:
        self.reason, self.path = reason, path
        super().__init__(f"{reason} (at {path})" if path else reason)


def admit(value: Any) -> Any:
    """A clean copy of ``value`` (see the module docstring), or Unrepresentable."""
    try:
        return _admit(value, "", set())
    except RecursionError:
        raise Unrepresentable("it is nested too deeply") from None


def _admit(value: Any, path: str, active: set[int]) -> Any:
    kind = type(value)
    if kind is str:
        return value if value.isascii() else clean_text(value)
    if value is None or kind is bool or kind is int:
        return value
    if kind is float:
        return _finite(value, path)
    if isinstance(value, enum.Enum):
        return value
    if kind is list or kind is tuple or kind is dict or isinstance(value, _base_model()):
        key = id(value)
        if key in active:
            raise Unrepresentable("it contains itself (a cycle)", path)
        active.add(key)
        try:
            return _container(value, path, active)
        finally:
            active.discard(key)
    return _scalar_subclass(value, path)


def _container(value: Any, path: str, active: set[int]) -> Any:
    if isinstance(value, _base_model()):
        fields = {name: _admit(getattr(value, name), f"{path}.{name}", active) for name in type(value).model_fields}
        return value.model_copy(update=fields)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise Unrepresentable(f"a dict key is of type '{type(key).__name__}'; keys must be strings", path)
            out[clean_text(str.__str__(key))] = _admit(item, f"{path}[{_quote(key)}]", active)
        return out
    return [_admit(item, f"{path}[{i}]", active) for i, item in enumerate(value)]


def _scalar_subclass(value: Any, path: str) -> Any:
    """Subclasses of str, int and float (numpy's float64, a str enum of another
    library) become the plain value; anything else is no JSON value."""
    if isinstance(value, str):
        return clean_text(str.__str__(value))
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return _finite(float.__float__(value), path)
    raise Unrepresentable(f"it holds a Python '{type(value).__name__}' object, which is not a JSON value "
                          "(null, true/false, a number, a string, a list or a dict)", path)


def _finite(value: float, path: str) -> float:
    if math.isfinite(value):
        return value
    shown = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    raise Unrepresentable(f"it holds {shown}, a number JSON cannot represent", path)


def _quote(key: str) -> str:
    shown = key if len(key) <= 40 else key[:37] + "..."
    return '"' + shown.replace('"', '\\"') + '"'


@functools.cache
def _base_model() -> type:
    # Imported on first use: the trace writer uses clean_text without pydantic.
    from pydantic import BaseModel

    return BaseModel
