"""Flow inputs: `-i KEY=VALUE`, `-i KEY=@file` and `--input-json` parsed, and every
input checked strictly against its declared type.

Inputs are the caller's data, so they are typed strictly (unlike model
outputs, which are parsed leniently): JSON `true` is not an `int`, the
string "1" is not an `int`, an object with a field its type does not declare
is refused, a key given twice is an error, and text that cannot be written
back out (lone UTF-16 surrogates) or JSON nested absurdly deep is refused at
the door rather than failing half-way through a run.
"""

from __future__ import annotations

import json
import numbers
import os
import re
from typing import Any, Callable

from ..types import BOOL, FLOAT, INT, NULL, STR, DictType, EnumType, ListType, OptionalType, Prim, StructType, \
    Type, strip_optional

# Deeper than any real input; keeps validation, traces and printing away from
# Python's recursion limit.
MAX_INPUT_DEPTH = 100
MAX_INPUT_FILE_BYTES = 64 * 1_048_576  # `-i KEY=@file` and `--input-json @file`: whole documents, not datasets
_SURROGATE = re.compile("[\ud800-\udfff]")

__all__ = ["InputError", "MAX_INPUT_DEPTH", "check_input_types", "parse_inputs"]


class InputError(ValueError):
    """A malformed or ill-typed input (from the command line: a usage error, exit status 2).

    ``input`` names the input when the error is about one.
    """

    def __init__(self, message: str, input: str | None = None) -> None:
        super().__init__(message)
        self.input = input


# ------------------------------------------------------------------ parsing


def parse_inputs(pairs: list[str], input_json: str | None, params: list[tuple[str, Type]],
                 owner: str = "the flow") -> dict[str, Any]:
    """Inputs by name. A `str` input takes the text as is; others parse it as JSON.

    ``owner`` names what takes the inputs in messages ("prompt 'answer'" for `fmflow render`).
    ``-i`` overrides a key of ``--input-json``; the same ``-i`` key twice is an error.
    """
    types = dict(params)
    inputs: dict[str, Any] = {}
    if input_json:
        from_file = input_json.startswith("@")
        text = _read(input_json[1:], "--input-json") if from_file else input_json
        data = _parse_json(text, "--input-json")
        if not isinstance(data, dict):
            raise InputError("--input-json must be a JSON object of the flow's inputs")
        inputs.update(data)
    given: set[str] = set()
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError(f"-i expects KEY=VALUE or KEY=@file, got '{_shown(pair)}'")
        if key not in types:
            known = ", ".join(types) or "none"
            raise InputError(f"{owner} has no input '{_shown(key)}' (inputs: {known})")
        if key in given:
            raise InputError(f"input '{key}' is given twice with -i; give it once")
        given.add(key)
        text = _read(raw[1:], f"-i {key}") if raw.startswith("@") else raw
        inputs[key] = text if strip_optional(types[key]) == STR else _json_or_text(key, text)
    for key, value in inputs.items():
        _check_text(value, f"input '{_shown(key)}'")
    return inputs


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_not_json)
    except RecursionError:
        raise InputError(f"{what}: the JSON is nested too deeply (at most {MAX_INPUT_DEPTH} levels)") from None
    except ValueError as error:
        raise InputError(f"{what} is not valid JSON: {error}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {_shown(json.dumps(key))} appears twice in one object")
        seen[key] = value
    return seen


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _json_or_text(key: str, text: str) -> Any:
    try:
        return _parse_json(text, f"-i {key}")
    except InputError as error:
        if text.lstrip()[:1] in ("[", "{", '"') or "nested too deeply" in str(error):
            raise InputError(f"-i {key}: not valid JSON ({str(error).partition(': ')[2]})") from None
        return text  # the type check then says what type was expected


def _read(path: str, what: str) -> str:
    from ..files import UnreadableFile, read_regular_file

    try:  # a regular file only: `-i text=@fifo` must not wait forever for a writer
        data = read_regular_file(os.path.expanduser(path), MAX_INPUT_FILE_BYTES, "input files")
    except UnreadableFile as error:
        raise InputError(f"{what}: cannot read '{_shown(path)}': {error.reason}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{what}: '{_shown(path)}' is not UTF-8 text (byte 0x{data[error.start]:02x} at offset "
                         f"{error.start})") from None


def _shown(text: str) -> str:
    """Text safe to print: an undecodable byte from the command line shows as an escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# ------------------------------------------------------------------ checking


def _check_text(value: Any, what: str) -> None:
    """No lone surrogates in any string or key, and no nesting past MAX_INPUT_DEPTH (iteratively:
    the value itself may be deeper than Python's recursion limit)."""
    stack: list[tuple[Any, int, tuple | None]] = [(value, 1, None)]   # (item, depth, its parent's entry)
    while stack:
        entry = stack.pop()
        item, depth, _parent = entry
        if depth > MAX_INPUT_DEPTH:
            if _contains_itself(entry):
                raise InputError(f"{what}: it contains itself")
            raise InputError(f"{what} is nested deeper than {MAX_INPUT_DEPTH} levels")
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found:
                raise InputError(f"{what} holds a lone surrogate ({_shown(found.group())}) at character "
                                 f"{found.start()}: it is not valid Unicode text (invalid UTF-8 bytes, or a "
                                 f"\\ud800-\\udfff escape without its pair)")
        elif isinstance(item, dict):
            stack.extend((k, depth + 1, entry) for k in item)
            stack.extend((v, depth + 1, entry) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1, entry) for v in item)


def _contains_itself(entry: tuple) -> bool:
    """Whether a container repeats on the path from the top to this entry (a cycle, not deep data)."""
    seen: set[int] = set()
    while entry is not None:
        item, _depth, entry = entry
        if isinstance(item, (dict, list, tuple)):
            if id(item) in seen:
                return True
            seen.add(id(item))
    return False


def check_input_types(params: list[tuple[str, Type]], inputs: dict[str, Any],
                      fields_of: Callable[[StructType], dict[str, Type]]) -> None:
    """Every input strictly of its declared type, or InputError naming the input, the place and why.

    Values may be JSON data or Python values (a model instance, an enum member).
    """
    for name, t in params:
        if name in inputs:
            try:
                _check_text(inputs[name], f"input '{name}'")
            except InputError as error:
                raise InputError(str(error), name) from None
            problem = _mismatch(t, inputs[name], fields_of)
            if problem is not None:
                where, why = problem
                raise InputError(f"input '{name}{where}': {why}", name)


def _mismatch(t: Type, value: Any, fields_of) -> tuple[str, str] | None:
    """(where inside the value, what is wrong) or None when ``value`` is strictly a ``t``."""
    if isinstance(t, OptionalType):
        return None if value is None else _mismatch(t.inner, value, fields_of)
    if isinstance(t, Prim):
        return None if _prim_fits(t, value) else ("", f"expected {_expected(t)}, got {_described(value)}")
    if isinstance(t, EnumType):
        if isinstance(value, str) and value in t.members:
            return None
        return "", f"expected one of {', '.join(t.members)} ({t.name}), got {_described(value)}"
    if isinstance(t, ListType):
        if not isinstance(value, (list, tuple)):
            return "", f"expected a list ({t}), got {_described(value)}"
        return _first(((f"[{i}]", t.item, v) for i, v in enumerate(value)), fields_of)
    if isinstance(t, DictType):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return "", f"expected an object with string keys ({t}), got {_described(value)}"
        return _first(((f"[{json.dumps(k)}]", t.value, v) for k, v in value.items()), fields_of)
    if isinstance(t, StructType):
        return _struct_mismatch(t, value, fields_of)
    return None  # json and types the checker could not tell: anything goes


def _struct_mismatch(t: StructType, value: Any, fields_of) -> tuple[str, str] | None:
    if hasattr(value, "model_dump") and type(value).__name__ == t.name:
        return None  # a value of this type built in Python (validation takes it as is)
    if not isinstance(value, dict):
        return "", f"expected an object of type {t.name}, got {_described(value)}"
    fields = fields_of(t)
    unknown = [k for k in value if k not in fields]
    if unknown:
        return "", (f"{t.name} has no field {', '.join(map(repr, unknown))} "
                    f"(fields: {', '.join(fields) or 'none'})")
    missing = [f for f, ft in fields.items()
               if f not in value and not isinstance(ft, OptionalType) and f not in t.defaults]
    if missing:
        return "", f"{t.name} needs field {', '.join(map(repr, missing))}"
    for name, choices in t.choices:  # a str field that is one of a few words (Message.role)
        if isinstance(value.get(name), str) and value[name] not in choices:
            return f".{name}", f"expected one of {', '.join(choices)}, got {_described(value[name])}"
    return _first(((f".{k}", fields[k], v) for k, v in value.items()), fields_of)


def _first(items, fields_of) -> tuple[str, str] | None:
    for where, t, value in items:
        problem = _mismatch(t, value, fields_of)
        if problem is not None:
            return where + problem[0], problem[1]
    return None


def _prim_fits(t: Prim, value: Any) -> bool:
    if t == STR:
        return isinstance(value, str)
    if t == INT:  # numbers.Integral: numpy's integers too; a bool is no int here
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if t == FLOAT:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if t == BOOL:
        return isinstance(value, bool)
    if t == NULL:
        return value is None
    return True  # json


def _expected(t: Prim) -> str:
    return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
            "null": "null"}.get(t.name, t.name)


def _described(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:39] + "…"
        return f"a string ({_shown(json.dumps(text, ensure_ascii=False))})"
    if isinstance(value, numbers.Number):
        return f"a number ({value})"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"
