"""fmflow.lock: a sha256 per prompt version, so changes need a new version number.

The hash covers what changes a prompt's behaviour: its template, its system
text, its output type (with the fields of declared types) and the settings
of its model. The lock file sits beside the flow files it covers, keyed by
file name, so one folder holds one lock for all its flows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from . import ast

if TYPE_CHECKING:
    from .checks.context import CheckContext

LOCK_NAME = "fmflow.lock"
LOCK_FORMAT = 1


class LockError(Exception):
    pass


def lock_path(flow_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(flow_path)), LOCK_NAME)


def prompt_key(decl: ast.PromptDecl) -> str:
    return f"{decl.name}@{decl.effective_version}"


def canonical(node: Any) -> Any:
    """A JSON-able form of an AST value that ignores spans and formatting."""
    if isinstance(node, ast.Node) and dataclasses.is_dataclass(node):
        out = {"node": type(node).__name__}
        for f in dataclasses.fields(node):
            if f.compare:
                out[f.name] = canonical(getattr(node, f.name))
        return out
    if isinstance(node, (list, tuple)):
        return [canonical(x) for x in node]
    if isinstance(node, float) and node.is_integer():
        return int(node)
    return node


def _type_shape(t, resolver, seen: set) -> Any:
    from .types import DictType, EnumType, ListType, OptionalType, StructType

    if isinstance(t, ListType):
        return ["list", _type_shape(t.item, resolver, seen)]
    if isinstance(t, DictType):
        return ["dict", _type_shape(t.value, resolver, seen)]
    if isinstance(t, OptionalType):
        return ["optional", _type_shape(t.inner, resolver, seen)]
    if isinstance(t, EnumType):
        return ["enum", t.name, list(t.members)]
    if isinstance(t, StructType):
        if t.name in seen:
            return ["type", t.name]
        fields = resolver.fields(t)
        inner = seen | {t.name}
        return ["type", t.name, {k: _type_shape(v, resolver, inner) for k, v in sorted(fields.items())}]
    return str(t)


def prompt_hash(decl: ast.PromptDecl, ctx: "CheckContext") -> str:
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
        "output": _type_shape(resolver.resolve(decl.returns), resolver, set()),
        "params": [[p.name, _type_shape(resolver.resolve(p.type), resolver, set())] for p in decl.params],
        "model": model_settings,
        "settings": {k: canonical(v) for k, v in sorted(entries.items())
                     if k in ("temperature", "max_tokens", "timeout", "cache")},
    }
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


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


def read_lock(flow_path: str) -> dict[str, str] | None:
    """Recorded hashes of one flow file's prompts, or None without a lock file."""
    path = lock_path(flow_path)
    if not os.path.lexists(path):
        return None
    entry = _read_all(path).get("files", {}).get(os.path.basename(flow_path), {})
    if not isinstance(entry, dict):
        raise LockError(f"{LOCK_NAME} is not an fmflow lock file")
    return {k: v for k, v in entry.items() if isinstance(v, str)}


def write_lock(ctx: "CheckContext") -> tuple[str, dict[str, str]]:
    """Record every prompt version of a checked file; returns the lock path and entries."""
    from .files import write_atomically

    path = lock_path(ctx.path)
    data = _read_all(path)
    hashes = {prompt_key(d): prompt_hash(d, ctx) for d in ctx.module.decls if isinstance(d, ast.PromptDecl)}
    files = data.setdefault("files", {})
    files[os.path.basename(ctx.path)] = dict(sorted(hashes.items()))
    data["fmflow_lock"] = LOCK_FORMAT
    data["files"] = dict(sorted(files.items()))
    text = json.dumps({"fmflow_lock": LOCK_FORMAT, "files": data["files"]}, indent=2) + "\n"
    write_atomically(path, text)  # never leave a half-written lock behind
    return path, hashes
