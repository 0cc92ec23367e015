"""Run traces: one JSON line per step in ``.fmflow/runs/<run-id>.jsonl``.

The file is a header record, one ``span`` record per finished step, and an
``end`` record. Each line is flushed as it is written, so a crashed run keeps
every span that finished before the crash. Values are cut to a readable size
and secrets are masked (``fmflow.secrets``) *before* they reach the file: a
trace is meant to be shared in a bug report.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from ..secrets import MASK, SecretMasker, is_secret_key_name
from .boundary import clean_text


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


def _error_text(error: Any) -> Any:
    if isinstance(error, BaseException):
        message = str(error)
        return f"{type(error).__name__}: {message}" if message else type(error).__name__
    return error


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(3).hex()


class Span:
    """One step in flight; written to the trace when it ends."""

    __slots__ = ("_writer", "id", "parent", "kind", "name", "line", "inputs", "attrs",
                 "start", "_t0", "ended")

    def __init__(self, writer: TraceWriter, span_id: str, parent: str | None, kind: str,
                 name: str, line: int | None, inputs: dict | None, attrs: dict) -> None:
        self._writer = writer
        self.id = span_id
        self.parent = parent
        self.kind = kind
        self.name = name
        self.line = line
        # A shallow copy keeps later rebinding by the caller out of the trace;
        # values themselves are converted only once, when the span is written.
        self.inputs = dict(inputs) if inputs else {}
        self.attrs = attrs
        self.start = time.time()
        self._t0 = time.perf_counter()
        self.ended = False

    def set(self, **attrs: Any) -> Span:
        self.attrs.update(attrs)
        return self

    def end(self, output: Any = None, error: Any = None) -> None:
        """Record the end and write the span; a second call does nothing."""
        if self.ended:
            return
        self.ended = True
        duration_ms = (time.perf_counter() - self._t0) * 1000.0
        self._writer._write_span(self, output, error, duration_ms)

    def __enter__(self) -> Span:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.end(error=exc)


class TraceWriter:
    """Appends a run's records to ``<runs_dir>/<run_id>.jsonl``."""

    def __init__(self, runs_dir: str | Path, run_id: str | None = None,
                 secrets: Iterable[str] | SecretMasker = (), flow: str = "", file: str = "",
                 to_jsonable: Callable[[Any], Any] | None = None) -> None:
        self.run_id = run_id or new_run_id()
        self.flow = flow
        self.file = file
        self.path = Path(runs_dir) / f"{self.run_id}.jsonl"
        self.last_error: Exception | None = None
        self._to_jsonable = to_jsonable or default_to_jsonable
        # A masker shared with the run sees the secrets it learns later (env() in a flow body).
        self.masker = secrets if isinstance(secrets, SecretMasker) else SecretMasker(secrets)
        self._keys: dict[str, tuple[str, bool]] = {}
        self._keys_version = self.masker.version
        self._ids = itertools.count(1)
        self._open: dict[str, Span] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.started = time.time()
        self._t0 = time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._write({"type": "run", "run_id": self.run_id, "flow": flow, "file": file,
                     "started": self.started})

    # -- spans -----------------------------------------------------------

    def start_span(self, kind: str, name: str, parent: str | Span | None = None,
                   line: int | None = None, inputs: dict | None = None, **attrs: Any) -> Span:
        if isinstance(parent, Span):
            parent = parent.id
        span = Span(self, f"s{next(self._ids)}", parent, kind, name, line, inputs, attrs)
        self._open[span.id] = span
        return span

    def _write_span(self, span: Span, output: Any, error: Any, duration_ms: float) -> None:
        self._open.pop(span.id, None)
        attrs = span.attrs
        if output is None:
            output = attrs.get("output")
        if error is None:
            error = attrs.get("error")
        clean, text = self._clean, self._clean_str
        # Built already clean, field by field: the fixed fields need no key
        # checks, which keeps a span write cheap.
        record = {"type": "span", "id": span.id,
                  "parent": None if span.parent is None else text(str(span.parent)),
                  "kind": text(str(span.kind)), "name": text(str(span.name)),
                  "line": span.line if type(span.line) is int else clean(span.line, 0),
                  "start": span.start, "end": span.start + duration_ms / 1000.0,
                  "duration_ms": round(duration_ms, 3),
                  "inputs": self._clean_dict(span.inputs, 1),
                  "output": clean(output, 0), "error": clean(_error_text(error), 0)}
        if attrs:
            extra = self._clean_dict(attrs, 0)
            for key, value in extra.items():
                if key not in record:   # attrs never overwrite the fixed fields
                    record[key] = value
        self._append(record)

    # -- the file --------------------------------------------------------

    def _write(self, record: dict) -> None:
        self._append(self._clean_dict(record, 0))

    def _append(self, record: dict) -> None:
        """Serialise and append one clean record; I/O trouble never breaks a run."""
        # clean_text: a lone surrogate that slipped through must not make the line unwritable.
        line = clean_text(json.dumps(record, ensure_ascii=False, separators=(",", ":"))) + "\n"
        with self._lock:
            if self._fh.closed:
                return
            try:
                self._fh.write(line)
                self._fh.flush()    # per line: a crash keeps every finished span
            except OSError as exc:
                self.last_error = exc

    def close(self, status: str = "ok", error: Any = None) -> None:
        """Write spans still open, then the end record; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        for span in list(self._open.values()):
            span.set(unfinished=True)
            span.end()
        record: dict[str, Any] = {"type": "end", "run_id": self.run_id, "status": status}
        if error is not None:
            record["error"] = _error_text(error)
        record["ended"] = time.time()
        record["duration_ms"] = round((time.perf_counter() - self._t0) * 1000.0, 3)
        self._write(record)
        with self._lock:
            self._fh.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close("error" if exc is not None else "ok", error=exc)

    # -- cleaning: one pass that converts, truncates and masks -------------

    def _clean(self, value: Any, depth: int) -> Any:
        t = type(value)
        if t is str:
            return self._clean_str(value)
        if value is None or t is bool or t is int:
            return value
        if t is float:
            return value if math.isfinite(value) else str(value)   # keep the file strict JSON
        if t is dict or t is list or t is tuple:
            if depth >= MAX_DEPTH:
                return f"…[nested deeper than {MAX_DEPTH}]"
            if t is dict:
                return self._clean_dict(value, depth + 1)
            return self._clean_list(value, depth + 1)
        try:
            converted = self._to_jsonable(value)
        except Exception:               # a value that cannot even be shown must not end the run
            converted = f"<{t.__name__}>"
        if type(converted) is t:        # the converter gave up: do not loop
            converted = str(value)
        return self._clean(converted, depth)

    def _clean_dict(self, value: dict, depth: int) -> dict:
        out = {}
        if self._keys_version != self.masker.version:   # a new secret may hide in a memoised key
            self._keys.clear()
            self._keys_version = self.masker.version
        keys = self._keys
        for key, item in value.items():
            known = keys.get(key) if type(key) is str else None
            if known is None:
                known = self._clean_key(key)
            name, secret = known
            if secret and item is not None:
                out[name] = MASK
            elif type(item) is str:     # the common case, without a call to _clean
                out[name] = self._clean_str(item)
            else:
                out[name] = self._clean(item, depth)
        return out

    def _clean_key(self, key: Any) -> tuple[str, bool]:
        """(masked key text, whether its value is a credential); str keys memoised."""
        name = self._clean_str(key if type(key) is str else str(key))
        known = (name, is_secret_key_name(name))
        if type(key) is str and len(self._keys) < 4096:   # key names repeat on every span
            self._keys[key] = known
        return known

    def _clean_list(self, value: list | tuple, depth: int) -> list:
        out = [self._clean(item, depth) for item in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            out.append(f"…[{len(value) - MAX_ITEMS} more items]")
        return out

    def _clean_str(self, text: str) -> str:
        # Mask before cutting: a cut could leave half a secret visible.
        text = self.masker.mask(text)
        if len(text) > MAX_STR:
            text = f"{text[:MAX_STR]}…[{len(text) - MAX_STR} more chars]"
        return text
