"""An eval's dataset: ``jsonl(path)``, ``csv(path)`` or ``parquet(path)``, with an optional ``type: T``.

The path is relative to the folder of the file that declares the eval.
Without ``type:``, the record type is read from the first lines of a JSONL
file (``SAMPLE_LINES``): each key seen becomes a field typed by its values
within its first MB (int and float give float, values of different kinds
give json, a key missing from a line or null in one gives an optional field).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import ast
from ..types import (BOOL, FLOAT, INT, JSON, NULL, STR, UNKNOWN, DictType, ListType, OptionalType, StructType, Type,
                     Unknown, join)

DATASET_FORMATS = {"jsonl": (".jsonl", ".ndjson"), "csv": (".csv",), "parquet": (".parquet", ".pq")}
SAMPLE_LINES = 50
SAMPLE_BYTES = 1 << 20   # a line longer than that cannot type the records
RECORD_TYPE_NAME = "record"


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset as written: its format, its path (as written and resolved) and the name of its type."""

    format: str
    written: str
    path: str
    type_name: ast.Name | None


class DatasetProblem(Exception):
    """Why a dataset entry cannot be read; ``node`` is where to say so."""

    def __init__(self, message: str, node: ast.Node, help: str | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.help = help


def read_dataset_entry(value: ast.Node, folder: str) -> DatasetSpec:
    """The DatasetSpec of a ``dataset:`` value; DatasetProblem when it is not ``FORMAT("path", type: T)``."""
    formats = ", ".join(f'{name}("…")' for name in DATASET_FORMATS)
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
            and value.func.id in DATASET_FORMATS):
        raise DatasetProblem("'dataset' expects a source such as jsonl(\"evals/qa.jsonl\")", value,
                             f"sources: {formats}")
    positional = [a for a in value.args if a.name is None]
    named = {a.name: a for a in value.args if a.name is not None}
    unknown = [name for name in named if name != "type"]
    if unknown:
        raise DatasetProblem(f"unknown argument '{unknown[0]}' for {value.func.id}(…)", named[unknown[0]],
                             "arguments: the path, then type: TYPE")
    if len(positional) != 1 or not (isinstance(positional[0].value, ast.Literal)
                                    and positional[0].value.kind == "str"):
        raise DatasetProblem(f"{value.func.id}(…) takes the file's path as one string", value)
    type_arg = named.get("type")
    if type_arg is not None and not (isinstance(type_arg.value, ast.Name) and type_arg.value.version is None):
        raise DatasetProblem("'type:' of a dataset expects the name of a declared type", type_arg.value)
    written = positional[0].value.value
    return DatasetSpec(value.func.id, written, os.path.normpath(os.path.join(folder, written)),
                       type_arg.value if type_arg is not None else None)


def sample_record_type(path: str, lines: int = SAMPLE_LINES, limit: int = SAMPLE_BYTES) -> StructType:
    """The record type of a JSONL file's first ``lines`` records, read from at most ``limit`` bytes.

    Lines that are not JSON objects are passed over. OSError when the file
    cannot be read, ValueError when no line in reach is an object.
    """
    import json  # here, not at the top: `fmflow check` imports this module

    fields: dict[str, Type] = {}
    seen = unreadable = 0
    for number, raw in enumerate(_first_lines(path, limit), 1):
        if raw.isspace() or not raw:
            continue
        try:
            record = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except (ValueError, RecursionError):
            record = None
        if not isinstance(record, dict):
            # `fmflow eval` counts such a line as a failed record; its type comes from the others.
            unreadable = unreadable or number
            continue
        for key in fields.keys() - record.keys():
            fields[key] = _optional(fields[key])
        for key, item in record.items():
            t = value_type(item)
            if key not in fields:
                fields[key] = t if seen == 0 else _optional(t)
            else:
                fields[key] = join(fields[key], t) or JSON
        seen += 1
        if seen >= lines:
            break
    if seen == 0:
        if unreadable:
            raise ValueError(f"line {unreadable} is not a JSON object, nor is any line up to it")
        raise ValueError(f"its first {limit // (1 << 20)} MB hold no complete line" if _larger(path, limit)
                         else "it holds no record")
    typed = {key: _settled(t) for key, t in fields.items()}
    return StructType(RECORD_TYPE_NAME, path, tuple(typed.items()))


def _first_lines(path: str, limit: int) -> list[bytes]:
    """The complete lines among the first ``limit`` bytes of a file (a regular file only)."""
    if not os.path.isfile(path):
        raise OSError(f"'{path}' is not a regular file")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # the file goes on: its last line here is cut
        data = data[:limit]
        data = data[:data.rfind(b"\n") + 1]
    return data.splitlines()


def _larger(path: str, limit: int) -> bool:
    return os.path.getsize(path) > limit


def value_type(value: object) -> Type:
    """The type of a JSON value, as the checker names it."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STR
    if isinstance(value, list):
        item: Type | None = None
        for x in value:
            t = value_type(x)
            item = t if item is None else (join(item, t) or JSON)
        # An empty list says nothing of its items: the other lines say it (UNKNOWN joins with anything).
        return ListType(UNKNOWN if item is None else JSON if item == NULL else item)
    return DictType(JSON)


def _settled(t: Type) -> Type:
    """A field's type once every sampled line is read: nothing but nulls is json?, empty lists list[json]."""
    if t == NULL:
        return OptionalType(JSON)
    if isinstance(t, OptionalType):
        return OptionalType(_settled(t.inner))
    if isinstance(t, ListType) and isinstance(t.item, Unknown):
        return ListType(JSON)
    return t


def _optional(t: Type) -> Type:
    if t == NULL:
        return OptionalType(JSON)
    return t if isinstance(t, (OptionalType,)) or t == JSON else OptionalType(t)
