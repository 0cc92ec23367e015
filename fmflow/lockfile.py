"""fmflow.lock: hashes of each prompt version, so changes need a new version number.

Two hashes per version (format 2): the prompt's own text (template, system
text, history, parameters with their types and defaults, the output type
with the fields, members and doc comments its schema shows, checks and
on_fail) and its model's identity (provider, name, temperature), so that E401
says which of the two changed. A model's transport settings, limits and
provider options are not locked: they change how a reply is obtained, not
what is asked. Format 1 (one hash of everything, the model's settings
included) is still read: its entries are compared with the hash it used.
The lock file sits beside the flow files it covers, keyed by file name, so
one folder holds one lock for all its flows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import ast

if TYPE_CHECKING:
    from .checks.context import CheckContext

LOCK_NAME = "fmflow.lock"
LOCK_FORMAT = 2  # 1: one hash per version; 2: {"prompt": …, "model": …} per version


class LockError(Exception):
    pass


def lock_path(flow_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(flow_path)), LOCK_NAME)


def prompt_key(decl: ast.PromptDecl) -> str:
    return f"{decl.name}@{decl.effective_version}"


def canonical(node: Any) -> Any:
    """A JSON-able form of an AST value that ignores spans and formatting.

    Built with a stack, not recursion: a template written as a chain of ten
    thousand `+` is that deep.
    """
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(node, root, 0)]
    while stack:
        value, parent, key = stack.pop()
        if isinstance(value, ast.Node) and dataclasses.is_dataclass(value):
            out: Any = {"node": type(value).__name__}
            stack.extend((getattr(value, f.name), out, f.name) for f in dataclasses.fields(value) if f.compare)
        elif isinstance(value, (list, tuple)):
            out = [None] * len(value)
            stack.extend((item, out, i) for i, item in enumerate(value))
        elif isinstance(value, float) and value.is_integer():
            out = int(value)
        else:
            out = value
        parent[key] = out
    return root[0]


def _enum_docs(decl) -> dict[str, str]:
    docs = {m.name: m.doc.text for m in getattr(decl, "members", ()) if m.doc is not None}
    return {**docs, "": decl.doc.text} if getattr(decl, "doc", None) is not None else docs


def _struct_docs(decl) -> dict[str, str]:
    docs = {f.name: f.doc.text for f in getattr(decl, "fields", ()) if f.doc is not None}
    return {**docs, "": decl.doc.text} if getattr(decl, "doc", None) is not None else docs


class _Raw(str):
    """JSON text to copy as is (punctuation), as opposed to a value to encode."""


def canonical_json(value: Any) -> str:
    """``json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)``, with a stack
    instead of recursion, so that deeply nested values (long operator chains) encode too."""
    from json.encoder import encode_basestring_ascii as quote

    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            out.append(item)
        elif isinstance(item, dict):
            parts: list[Any] = [_Raw("{")]
            for i, (key, inner) in enumerate(sorted(item.items())):
                parts += [_Raw(("," if i else "") + quote(key) + ":"), inner]
            stack.extend(reversed([*parts, _Raw("}")]))
        elif isinstance(item, (list, tuple)):
            parts = [_Raw("[")]
            for i, inner in enumerate(item):
                parts += [_Raw(",")] if i else []
                parts.append(inner)
            stack.extend(reversed([*parts, _Raw("]")]))
        else:
            out.append(_scalar_json(item, quote))
    return "".join(out)


def _scalar_json(value: Any, quote) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return json.dumps(value)
    return quote(value if isinstance(value, str) else str(value))


def _type_shape(t, resolver, with_docs: bool = False) -> Any:
    """A JSON-able form of a type, declared types spelled out (each once per path: recursive
    types end in ``["type", NAME]``). Built with a stack: declared types may nest deeply.
    ``with_docs``: with the doc comments that output schemas show as descriptions."""
    from .types import DictType, EnumType, ListType, OptionalType, StructType

    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, frozenset]] = [(t, root, 0, frozenset())]
    while stack:
        current, parent, key, seen = stack.pop()
        wrapper = ("list" if isinstance(current, ListType) else "dict" if isinstance(current, DictType)
                   else "optional" if isinstance(current, OptionalType) else None)
        if wrapper is not None:
            out: Any = [wrapper, None]
            inner = current.item if wrapper == "list" else current.value if wrapper == "dict" else current.inner
            stack.append((inner, out, 1, seen))
        elif isinstance(current, EnumType):
            out = ["enum", current.name, list(current.members)]
            if with_docs and _enum_docs(current.decl):
                out.append(_enum_docs(current.decl))
        elif isinstance(current, StructType) and current.name in seen:
            out = ["type", current.name]
        elif isinstance(current, StructType):
            fields = resolver.fields(current)
            shapes: dict[str, Any] = {}
            out = ["type", current.name, shapes]
            stack.extend((v, shapes, k, seen | {current.name}) for k, v in sorted(fields.items()))
            if with_docs and _struct_docs(current.decl):
                out.append(_struct_docs(current.decl))
        else:
            out = str(current)
        parent[key] = out
    return root[0]


@dataclass(frozen=True)
class PromptHashes:
    """What the lock records of one prompt version: two hashes, so E401 can say which changed."""

    text: str   # the prompt's own text: template, system, history, parameters, output type, checks, on_fail
    model: str  # its model's identity: provider, name and temperature

    def as_json(self) -> dict[str, str]:
        return {"prompt": self.text, "model": self.model}


# The prompt's keys that are the model's business, not the prompt's text (the model hash
# takes `temperature`; `max_tokens`, `timeout` and `cache` change no answer's meaning).
_MODEL_KEYS = ("model", "temperature", "max_tokens", "timeout", "cache")
# What identifies a model: not its transport settings, limits or provider options
# (a replay model's scripted answers are options).
_MODEL_IDENTITY = ("provider", "name", "temperature")


def prompt_hashes(decl: ast.PromptDecl, ctx: "CheckContext") -> PromptHashes:
    from .checks.resolve import TypeResolver
    from .diagnostics import Diagnostics

    resolver = TypeResolver(ctx, Diagnostics())
    entries = {e.key: e.value for e in decl.entries}
    text = {
        "entries": {k: canonical(v) for k, v in sorted(entries.items()) if k not in _MODEL_KEYS},
        "params": [[p.name, _type_shape(resolver.resolve(p.type), resolver, with_docs=True), canonical(p.default)]
                   for p in decl.params],
        "output": _type_shape(resolver.resolve(decl.returns), resolver, with_docs=True),
    }
    model: dict[str, Any] = {"model": None}
    model_decl = _model_of(decl, entries, ctx)
    if model_decl is not None:
        settings = {e.key: e.value for e in model_decl.entries}
        model = {k: canonical(settings.get(k)) for k in _MODEL_IDENTITY}
    if "temperature" in entries:  # the prompt's own temperature is the one its model samples with
        model["temperature"] = canonical(entries["temperature"])
    return PromptHashes(_sha256(text), _sha256(model))


def _model_of(decl: ast.PromptDecl, entries: dict, ctx: "CheckContext") -> ast.ModelDecl | None:
    """The declared model that answers the prompt: its `model:`, else the model named `default`."""
    from .checks.typecheck import DEFAULT_MODEL

    ref = entries.get("model")
    name = ref.id if isinstance(ref, ast.Name) else DEFAULT_MODEL if ref is None else None
    model = ctx.lookup(name) if name is not None else None
    return model if isinstance(model, ast.ModelDecl) else None


def _sha256(content: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(content).encode()).hexdigest()


def legacy_prompt_hash(decl: ast.PromptDecl, ctx: "CheckContext") -> str:
    """The one hash per version of lock format 1 (everything, model settings included),
    kept to compare the entries of older lock files."""
    from .checks.resolve import TypeResolver
    from .diagnostics import Diagnostics

    resolver = TypeResolver(ctx, Diagnostics())
    entries = {e.key: e.value for e in decl.entries}
    model_settings: Any = None
    model_ref = entries.get("model")
    if isinstance(model_ref, ast.Name):
        model = ctx.lookup(model_ref.id)
        if isinstance(model, ast.ModelDecl):
            model_settings = {e.key: canonical(e.value) for e in model.entries}
    content = {
        "template": canonical(entries.get("template")),
        "system": canonical(entries.get("system")),
        "output": _type_shape(resolver.resolve(decl.returns), resolver),
        "params": [[p.name, _type_shape(resolver.resolve(p.type), resolver)] for p in decl.params],
        "model": model_settings,
        "settings": {k: canonical(v) for k, v in sorted(entries.items())
                     if k in ("temperature", "max_tokens", "timeout", "cache")},
    }
    return _sha256(content)


MAX_LOCK_BYTES = 10 * 1024 * 1024


def _read_all(path: str) -> dict:
    from .files import UnreadableFile, read_regular_file

    if not os.path.lexists(path):
        return {}
    try:
        data = json.loads(read_regular_file(path, MAX_LOCK_BYTES, "lock files").decode("utf-8"))
    except UnreadableFile as error:
        raise LockError(f"{LOCK_NAME} cannot be read: {error.reason}") from None
    except (ValueError, RecursionError) as error:
        raise LockError(f"{LOCK_NAME} cannot be read: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("files", {}), dict):
        raise LockError(f"{LOCK_NAME} is not an fmflow lock file")
    return data


def read_lock(flow_path: str) -> dict[str, PromptHashes | str] | None:
    """Recorded hashes of one flow file's prompts, or None without a lock file. An entry
    written by format 1 is its one hash (a str), to compare with ``legacy_prompt_hash``."""
    path = lock_path(flow_path)
    if not os.path.lexists(path):
        return None
    entry = _read_all(path).get("files", {}).get(os.path.basename(flow_path), {})
    if not isinstance(entry, dict):
        raise LockError(f"{LOCK_NAME} is not an fmflow lock file")
    recorded: dict[str, PromptHashes | str] = {}
    for key, value in entry.items():
        if isinstance(value, str):
            recorded[key] = value
        elif isinstance(value, dict) and isinstance(value.get("prompt"), str) and isinstance(value.get("model"), str):
            recorded[key] = PromptHashes(value["prompt"], value["model"])
        else:
            raise LockError(f"{LOCK_NAME}: the entry of '{key}' is not a pair of hashes")
    return recorded


def write_lock(ctx: "CheckContext") -> tuple[str, dict[str, PromptHashes]]:
    """Record every prompt version of a checked file; returns the lock path and entries.
    Other files' entries are kept as they are (an older format's included)."""
    from .files import write_atomically

    path = lock_path(ctx.path)
    data = _read_all(path)
    hashes = {prompt_key(d): prompt_hashes(d, ctx) for d in ctx.module.decls if isinstance(d, ast.PromptDecl)}
    files = data.setdefault("files", {})
    files[os.path.basename(ctx.path)] = {k: v.as_json() for k, v in sorted(hashes.items())}
    data["fmflow_lock"] = LOCK_FORMAT
    data["files"] = dict(sorted(files.items()))
    text = json.dumps({"fmflow_lock": LOCK_FORMAT, "files": data["files"]}, indent=2) + "\n"
    write_atomically(path, text)  # never leave a half-written lock behind
    return path, hashes
