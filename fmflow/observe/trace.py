"""Run traces: one JSON line per step in ``.fmflow/runs/<run-id>.jsonl``.

The file is a header record (``run``: the run id, the OpenTelemetry trace id
of the run, the flow, the file, the start), one ``span`` record per finished
step, and an ``end`` record. A span costs the event loop only its creation
and a list append when it ends: converting, masking and writing happen on
the background writer (background.py), which also hands each clean span to
the OTLP exporter when one is set (otlp.py). Closing a trace wakes that
writer, which writes what is left and closes the file; ``finish()`` does it
at once in the caller's thread, for whoever needs the file complete now.

Values are cut to a readable size and secrets are masked (cleaning.py)
*before* they reach the file or an exporter: a trace is meant to be shared
in a bug report. Values are read when written, a fraction of a second after
their step ended: the runtime copies values where they enter a run, so a
step's output is not changed afterwards.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..runtime.boundary import clean_text
from ..secrets import SecretMasker
from .background import BACKGROUND
from .cleaning import MAX_DEPTH, Cleaner, default_to_jsonable, error_text  # noqa: F401  (re-exported)

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode   # one encoder for every line
_FIXED = frozenset(("type", "id", "parent", "kind", "name", "line", "start", "end", "duration_ms", "inputs",
                    "output", "error"))
_WAIT_FOR_WRITER = 2.0   # seconds a signal handler waits for the writer thread to let go of a trace


def _json_value(clean: Cleaner, value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is str:
        return clean.json_text(value)
    return _ENCODE(clean.value(value))


_STAMP: list = [None, ""]   # the last second formatted for a run id, and its text


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxxxx``: the start second and 24 random bits (``random`` is reseeded in a
    forked child, so processes of one cluster do not repeat each other's ids)."""
    second = int(time.time())
    if _STAMP[0] != second:
        _STAMP[:] = [second, time.strftime("%Y%m%d-%H%M%S", time.localtime(second))]
    return f"{_STAMP[1]}-{random.getrandbits(24):06x}"


class Span:
    """One step in flight; handed to its trace's buffer when it ends."""

    # An ended span waits in its trace's buffer holding its own result (output, error,
    # duration_ms, set by end()), with no tuple beside it.
    __slots__ = ("_writer", "id", "parent", "kind", "name", "line", "inputs", "attrs", "_t0", "ended",
                 "output", "error", "duration_ms")

    def __init__(self, writer: TraceWriter, span_id: str, parent: str | None, kind: str,
                 name: str, line: int | None, inputs: dict | None, attrs: dict) -> None:
        self._writer = writer
        self.id = span_id
        self.parent = parent
        self.kind = kind
        self.name = name
        self.line = line
        # A shallow copy keeps later rebinding by the caller out of the trace.
        self.inputs = dict(inputs) if inputs else {}
        self.attrs = attrs
        self._t0 = time.perf_counter()
        self.ended = False

    @property
    def start(self) -> float:
        """Wall time of the start, from the one clock read of the trace's start."""
        return self._writer.started + (self._t0 - self._writer._t0)

    def set(self, **attrs: Any) -> Span:
        self.attrs.update(attrs)
        return self

    def end(self, output: Any = None, error: Any = None) -> None:
        """Record the end; a second call does nothing."""
        if self.ended:
            return
        self.duration_ms = (time.perf_counter() - self._t0) * 1000.0
        self.ended = True
        self.output, self.error = output, error
        writer = self._writer
        writer._open.pop(self.id, None)
        writer._pending.append(self)

    def result(self) -> tuple[Any, Any]:
        """An ended span's output and error: those given to end(), else those set as attributes."""
        output, error = self.output, self.error
        return (self.attrs.get("output") if output is None else output,
                self.attrs.get("error") if error is None else error)

    def __enter__(self) -> Span:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.end(error=exc)


class TraceWriter:
    """Buffers a run's records and appends them to ``<runs_dir>/<run_id>.jsonl``."""

    def __init__(self, runs_dir: str | Path, run_id: str | None = None,
                 secrets: Iterable[str] | SecretMasker = (), flow: str = "", file: str = "",
                 to_jsonable: Callable[[Any], Any] | None = None, exporter: Any = None) -> None:
        self.run_id = run_id or new_run_id()
        self._new_id = run_id is None
        self.trace_id = f"{random.getrandbits(128) or 1:032x}"   # the run's OpenTelemetry trace id (W3C)
        self.flow = flow
        self.file = file
        self._path = os.path.join(runs_dir, f"{self.run_id}.jsonl")
        self.last_error: Exception | None = None
        # A masker shared with the run sees the secrets it learns later (env() in a flow body).
        self.masker = secrets if isinstance(secrets, SecretMasker) else SecretMasker(secrets)
        self._cleaner = Cleaner(self.masker, to_jsonable or default_to_jsonable)
        self._exporter = exporter
        self._next_id = 0
        self._open: dict[str, Span] = {}
        self._pending: deque = deque()        # ended spans and records, not yet written
        self._lock = threading.RLock()        # one drain at a time (re-entered by a signal handler)
        self._fd: int | None = None           # the file, opened at the first write
        self._done = False                    # finished, or the file cannot be made: nothing more is written
        self._closed = False
        self.started = time.time()
        self._t0 = time.perf_counter()
        self._pending.append({"type": "run", "run_id": self.run_id, "trace_id": self.trace_id, "flow": flow,
                              "file": file, "started": self.started})
        BACKGROUND.add(self)

    @property
    def path(self) -> Path:
        return Path(self._path)

    # -- spans -----------------------------------------------------------

    def start_span(self, kind: str, name: str, parent: str | Span | None = None,
                   line: int | None = None, inputs: dict | None = None, **attrs: Any) -> Span:
        if isinstance(parent, Span):
            parent = parent.id
        self._next_id += 1
        span = Span(self, f"s{self._next_id}", parent, kind, name, line, inputs, attrs)
        self._open[span.id] = span
        return span

    def _span_record(self, span: Span) -> dict:
        attrs, duration_ms = span.attrs, span.duration_ms
        output, error = span.result()
        clean = self._cleaner
        text, value = clean.text, clean.value
        # Built already clean, field by field: the fixed fields need no key checks.
        record = {"type": "span", "id": span.id,
                  "parent": None if span.parent is None else text(str(span.parent)),
                  "kind": text(str(span.kind)), "name": text(str(span.name)),
                  "line": span.line if type(span.line) is int else value(span.line),
                  "start": span.start, "end": span.start + duration_ms / 1000.0,
                  "duration_ms": round(duration_ms, 3),
                  "inputs": clean.mapping(span.inputs, 1),
                  "output": value(output), "error": value(error_text(error))}
        if attrs:
            for key, item in clean.mapping(attrs).items():
                if key not in record:   # attrs never overwrite the fixed fields
                    record[key] = item
        return record

    # -- the file --------------------------------------------------------

    def drain(self) -> None:
        """Write every buffered record (one write, one flush); I/O trouble never breaks a run."""
        if not self._lock.acquire(timeout=_WAIT_FOR_WRITER):
            return
        try:
            pending = self._pending
            if not pending or self._done:
                return
            lines = []
            while pending:
                lines.append(self._line(pending.popleft()))
            self._write("".join(lines))
        finally:
            self._lock.release()

    def _line(self, item: Any) -> str:
        if type(item) is not Span:   # the run's header or end record
            line = _ENCODE(self._cleaner.mapping(item))
        elif self._exporter is not None:
            record = self._span_record(item)
            self._exporter.span(self, record)
            line = _ENCODE(record)
        else:
            line = self._span_line(item)
        # clean_text: a lone surrogate that slipped through must not make the line unwritable.
        return clean_text(line) + "\n"

    def _span_line(self, span: Span) -> str:
        """The JSON text of ``_span_record``, put together directly: the same line for a
        fraction of the time (most spans are small, and there are many)."""
        attrs, duration_ms = span.attrs, span.duration_ms
        output, error = span.result()
        clean = self._cleaner
        text = clean.json_text
        start = span.start
        parent = "null" if span.parent is None else text(str(span.parent))
        line = span.line
        if type(line) is not int:
            line = "null" if line is None else _ENCODE(clean.value(line))
        inputs = clean.json_mapping(span.inputs, 1) if span.inputs else "{}"
        head = (f'{{"type":"span","id":{text(span.id)},"parent":{parent},"kind":{text(str(span.kind))},'
                f'"name":{text(str(span.name))},"line":{line},'
                f'"start":{start!r},"end":{start + duration_ms / 1000.0!r},'
                f'"duration_ms":{round(duration_ms, 3)!r},"inputs":{inputs},"output":{_json_value(clean, output)},'
                f'"error":{_json_value(clean, error_text(error))}')
        if not attrs:
            return head + "}"
        extra = {k: v for k, v in clean.mapping(attrs).items() if k not in _FIXED}   # never over the fixed fields
        return head + ("," + _ENCODE(extra)[1:] if extra else "}")

    def _write(self, text: str) -> None:
        """Append to the file: raw writes, the fewest system calls (on the writer thread each
        call also means waiting for the interpreter lock again)."""
        try:
            if self._fd is None:
                self._fd = self._open_file()
            data = text.encode("utf-8")
            while data:   # a write may take less than it was given
                data = data[os.write(self._fd, data):]
        except OSError as exc:
            self.last_error = exc
            if self._fd is None:
                self._done = True   # the file cannot be made: later records are dropped, not retried

    def _open_file(self) -> int:
        """The trace file, opened to append: a run id given by the caller may name an existing
        trace, which is added to, never replaced."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(self._path, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
            return os.open(self._path, flags, 0o644)

    def close(self, status: str = "ok", error: Any = None, wait: bool = True) -> None:
        """End spans still open, add the end record and write everything; a second call does
        nothing. With ``wait=False`` the background writer writes the rest and closes the
        file (this wakes it), off the event loop; :meth:`finish` completes it at once for
        whoever needs the file complete later."""
        if not self._closed:   # no lock: the writer thread only takes records from the deque's left
            self._closed = True
            self._end_record(status, error)
        if wait or not BACKGROUND.finish_soon(self):
            self.finish()

    @property
    def closed(self) -> bool:
        return self._closed

    def finish(self) -> None:
        """Write everything still buffered and close the file (at most once; either the
        background writer or a caller that needs the file complete does it)."""
        with self._lock:
            if self._done and not self._pending:
                return
            self.drain()
            self._done = True
            self._pending.clear()
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError as exc:
                    self.last_error = exc
                self._fd = None
        BACKGROUND.remove(self)

    def terminate(self) -> None:
        """The process is being killed (SIGTERM): write what there is and say so."""
        if not self._lock.acquire(timeout=_WAIT_FOR_WRITER):
            return
        try:
            if not self._closed:
                self._closed = True
                self._end_record("terminated", "the process received SIGTERM")
            self.drain()
        finally:
            self._lock.release()

    def _end_record(self, status: str, error: Any) -> None:
        for span in list(self._open.values()):
            span.set(unfinished=True)
            span.end()
        record: dict[str, Any] = {"type": "end", "run_id": self.run_id, "status": status}
        if error is not None:
            record["error"] = error_text(error)
        record["ended"] = time.time()
        record["duration_ms"] = round((time.perf_counter() - self._t0) * 1000.0, 3)
        self._pending.append(record)

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close("error" if exc is not None else "ok", error=exc)
