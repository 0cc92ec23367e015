"""Values as they go into a trace: converted to JSON data, cut to a readable size, secrets masked.

One pass does all three, *before* anything reaches a file or an exporter: a
trace is meant to be shared in a bug report. Masking follows the one rule of
``fmflow.secrets``; strings are masked before they are cut, so that a cut
never leaves half a secret visible.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

from ..secrets import MASK, SecretMasker, is_secret_key_name

MAX_STR = 2000
MAX_ITEMS = 50
MAX_DEPTH = 8
SHORT = 64          # texts up to this long are memoised (they repeat: kinds, names, ids, small values)
MEMO_LIMIT = 8192   # memoised texts per table

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode   # one encoder for every line
_JSON_STRING = json.encoder.encode_basestring                 # a str as a JSON string (C, not ASCII-only)
_MASKED = _JSON_STRING(MASK)


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


class _Memo:
    """Memoised cleaning of short texts under one set of secrets: key names (their masked
    text and whether they name a credential), texts, and texts as JSON literals."""

    __slots__ = ("keys", "short", "short_json")

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, bool]] = {}
        self.short: dict[str, str] = {}
        self.short_json: dict[str, str] = {}


# Shared by every trace of the process whose masker has the same secrets (a masker's
# pattern stands for them), so that a run starts with the texts earlier runs cleaned.
# A dict operation is atomic, so the writer thread and the event loop can share them.
_MEMOS: dict[Any, _Memo] = {}


def _memo_for(masker: SecretMasker) -> _Memo:
    key = masker.pattern
    memo = _MEMOS.get(key)
    if memo is None:
        if len(_MEMOS) >= 16:   # sets of secrets come and go (runs that read env()): keep the newest
            _MEMOS.clear()
        memo = _MEMOS[key] = _Memo()
    return memo


class Cleaner:
    """Cleans values for one trace; not thread-safe (its writer serialises the calls)."""

    def __init__(self, masker: SecretMasker, to_jsonable: Callable[[Any], Any] | None = None) -> None:
        self.masker = masker
        self._to_jsonable = to_jsonable or default_to_jsonable
        self._use_memo()

    def _use_memo(self) -> None:
        # The version first: a secret learned meanwhile then only makes the next check move again.
        self._keys_version = self.masker.version
        memo = _memo_for(self.masker)
        self._keys, self._short, self._short_json = memo.keys, memo.short, memo.short_json

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
        self._check_version()
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
        if type(key) is str and len(self._keys) < MEMO_LIMIT:
            self._keys[key] = known
        return known

    def _sequence(self, value: list | tuple, depth: int) -> list:
        out = [self.value(item, depth) for item in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            out.append(f"…[{len(value) - MAX_ITEMS} more items]")
        return out

    def text(self, text: str) -> str:
        if len(text) <= SHORT:
            known = self._short.get(text)
            if known is not None and self._keys_version == self.masker.version:
                return known
            self._check_version()
            masked = self.masker.mask(text)
            if len(self._short) < MEMO_LIMIT:
                self._short[text] = masked
            return masked
        # Mask before cutting: a cut could leave half a secret visible.
        text = self.masker.mask(text)
        if len(text) > MAX_STR:
            text = f"{text[:MAX_STR]}…[{len(text) - MAX_STR} more chars]"
        return text

    def json_text(self, text: str) -> str:
        """``text`` cleaned, as a JSON string literal (memoised like ``text``)."""
        if len(text) <= SHORT:
            known = self._short_json.get(text)
            if known is not None and self._keys_version == self.masker.version:
                return known
            literal = _JSON_STRING(self.text(text))
            if len(self._short_json) < MEMO_LIMIT:
                self._short_json[text] = literal
            return literal
        return _JSON_STRING(self.text(text))

    def json_mapping(self, value: dict, depth: int = 0) -> str:
        """``mapping(value)`` as JSON text; a dict of texts (the usual inputs) without the encoder."""
        parts = []
        for key, item in value.items():
            if type(key) is not str or type(item) is not str:
                return _ENCODE(self.mapping(value, depth))
            name, secret = self._keys.get(key) or self._key(key)
            parts.append(f"{_JSON_STRING(name)}:{_MASKED if secret else self.json_text(item)}")
        return "{" + ",".join(parts) + "}"

    def _check_version(self) -> None:
        """Move to the memo of the masker's new secrets when it learned one: it may hide in a
        text memoised before."""
        if self._keys_version != self.masker.version:
            self._use_memo()
