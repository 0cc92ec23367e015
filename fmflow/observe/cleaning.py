"""Values as they go into a trace: converted to JSON data, cut to a readable size, secrets masked.

One pass does all three, *before* anything reaches a file or an exporter: a
trace is meant to be shared in a bug report. Masking follows the one rule of
``fmflow.secrets``; strings are masked before they are cut, so that a cut
never leaves half a secret visible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

from ..secrets import MASK, SecretMasker, is_secret_key_name

MAX_STR = 2000
MAX_ITEMS = 50
MAX_DEPTH = 8


def default_to_jsonable(value: Any) -> Any:
    """One step towards JSON for a value json cannot write; str() as last resort."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}   # shallow: no deep copy
    dump = getattr(value, "model_dump", None)          # pydantic models
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, Enum):
        return value.value
    return str(value)


def error_text(error: Any) -> Any:
    """``Type: message`` for an exception; anything else as it is."""
    if isinstance(error, BaseException):
        message = str(error)
        return f"{type(error).__name__}: {message}" if message else type(error).__name__
    return error


class Cleaner:
    """Cleans values for one trace; not thread-safe (its writer serialises the calls)."""

    def __init__(self, masker: SecretMasker, to_jsonable: Callable[[Any], Any] | None = None) -> None:
        self.masker = masker
        self._to_jsonable = to_jsonable or default_to_jsonable
        # Key names repeat on every span: their masked text and whether they name a credential.
        self._keys: dict[str, tuple[str, bool]] = {}
        self._keys_version = masker.version

    def value(self, value: Any, depth: int = 0) -> Any:
        t = type(value)
        if t is str:
            return self.text(value)
        if value is None or t is bool or t is int:
            return value
        if t is float:
            return value if math.isfinite(value) else str(value)   # keep the file strict JSON
        if t is dict or t is list or t is tuple:
            if depth >= MAX_DEPTH:
                return f"…[nested deeper than {MAX_DEPTH}]"
            if t is dict:
                return self.mapping(value, depth + 1)
            return self._sequence(value, depth + 1)
        try:
            converted = self._to_jsonable(value)
        except Exception:               # a value that cannot even be shown must not end the run
            converted = f"<{t.__name__}>"
        if type(converted) is t:        # the converter gave up: do not loop
            converted = str(value)
        return self.value(converted, depth)

    def mapping(self, value: dict, depth: int = 0) -> dict:
        out = {}
        if self._keys_version != self.masker.version:   # a new secret may hide in a memoised key
            self._keys.clear()
            self._keys_version = self.masker.version
        keys = self._keys
        for key, item in value.items():
            known = keys.get(key) if type(key) is str else None
            if known is None:
                known = self._key(key)
            name, secret = known
            if secret and item is not None:
                out[name] = MASK
            elif type(item) is str:     # the common case, without a call to value()
                out[name] = self.text(item)
            else:
                out[name] = self.value(item, depth)
        return out

    def _key(self, key: Any) -> tuple[str, bool]:
        """(masked key text, whether its value is a credential); str keys memoised."""
        name = self.text(key if type(key) is str else str(key))
        known = (name, is_secret_key_name(name))
        if type(key) is str and len(self._keys) < 4096:
            self._keys[key] = known
        return known

    def _sequence(self, value: list | tuple, depth: int) -> list:
        out = [self.value(item, depth) for item in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            out.append(f"…[{len(value) - MAX_ITEMS} more items]")
        return out

    def text(self, text: str) -> str:
        # Mask before cutting: a cut could leave half a secret visible.
        text = self.masker.mask(text)
        if len(text) > MAX_STR:
            text = f"{text[:MAX_STR]}…[{len(text) - MAX_STR} more chars]"
        return text
