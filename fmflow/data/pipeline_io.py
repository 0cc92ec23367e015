"""A pipeline's ends: the `files(glob)` source, the sinks, and `<sink>.errors.jsonl`.

Sinks are written once, when every stage is done, from the last stage's file:
under a temporary name, then renamed into place, so a sink is either the
previous one or the complete new one, never half written.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
from typing import Any, Iterator

from .pipeline_whole import stage_lines, stage_records
from .records import DataError, Record
from .sources import Scan, Skip, Source, _never

ERRORS_SUFFIX = ".errors.jsonl"
PARQUET_BATCH = 1024


class FilesSource(Source):
    """`files(glob)`: one record `{path, text}` per matching file, sorted; text read as `fmflow index` reads it."""

    format = "files"

    def __init__(self, pattern: str, base: str) -> None:
        super().__init__(pattern)
        self.base = base
        self.paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))

    def scan(self) -> Scan:
        digest = hashlib.sha256()
        for path in self.paths:
            digest.update(json.dumps([os.path.relpath(path, self.base), os.path.getsize(path),
                                      os.stat(path).st_mtime_ns]).encode())
        return Scan(len(self.paths), digest.hexdigest())

    def records(self, skip: Skip = _never) -> Iterator[Record]:
        from ..retrieval.documents import DocumentError, read_document

        for line, path in enumerate(self.paths, 1):
            if skip(line):
                continue
            shown = os.path.relpath(path, self.base)
            try:
                yield Record(line, {"path": shown, "text": read_document(path).text})
            except DocumentError as error:
                yield Record(line, error=f"{shown}: {error}")


# ------------------------------------------------------------------ sinks

def write_sink(kind: str, path: str, last_stage: str, fields: list[str] | None) -> int:
    """Write the sink from the last stage file (atomically); the number of records written."""
    temporary = f"{path}.tmp"
    records = (record for _, record in stage_records(last_stage))
    writer = {"jsonl": _write_jsonl, "csv": _write_csv, "parquet": _write_parquet}[kind]
    try:
        count = writer(temporary, records, fields)
    except OSError as error:
        raise DataError(f"cannot write '{path}': {error.strerror or error}") from None
    os.replace(temporary, path)
    return count


def _write_jsonl(path: str, records, fields) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
        _sync(out)
    return count


def _cell(value: Any) -> str:
    """A CSV cell: text as it is, null empty, other values as JSON (as CSV sources read them back)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _write_csv(path: str, records, fields) -> int:
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        header = list(fields or [])
        writer.writerow(header)
        for record in records:
            writer.writerow([_cell(record.get(name)) for name in header])
            count += 1
        _sync(out)
    return count


def _write_parquet(path: str, records, fields) -> int:
    """Columns of the record type's fields; nested values (lists, dicts) as JSON text."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("writing Parquet needs pyarrow: pip install pyarrow") from None
    names = list(fields or [])
    count, writer, batch = 0, None, []

    def flush() -> None:
        nonlocal writer
        columns = {n: [_parquet_value(r.get(n)) for r in batch] for n in names}
        table = pa.table(columns) if names else pa.table({"_": [None] * len(batch)})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table.cast(writer.schema))

    try:
        for record in records:
            batch.append(record)
            count += 1
            if len(batch) >= PARQUET_BATCH:
                flush()
                batch = []
        if batch or writer is None:
            flush()
    finally:
        if writer is not None:
            writer.close()
    return count


def _parquet_value(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value


def _sync(out) -> None:
    out.flush()
    os.fsync(out.fileno())


# ----------------------------------------------------------------- errors

def errors_path(sink: str) -> str:
    return sink + ERRORS_SUFFIX


def write_errors(sink: str, stage_files: list[str]) -> int:
    """`<sink>.errors.jsonl`: every record that failed a step, by source line; none: the file is removed."""
    failures = sorted((data for path in stage_files for data in stage_lines(path) if "error" in data),
                      key=lambda d: d["line"])
    target = errors_path(sink)
    if not failures:
        if os.path.exists(target):
            os.remove(target)
        return 0
    with open(target + ".tmp", "w", encoding="utf-8") as out:
        for data in failures:
            line = {"line": data["line"], "step": data["step"], "error": data["error"]}
            if "record" in data:
                line["record"] = data["record"]
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
        _sync(out)
    os.replace(target + ".tmp", target)
    return len(failures)


def stage_counts(path: str, steps: int) -> list[list[int]]:
    """Records in and out of each step of a per-record stage, summed over its file."""
    totals = [[0, 0] for _ in range(steps)]
    for data in stage_lines(path):
        for total, (into, out) in zip(totals, data.get("counts", ())):
            total[0] += into
            total[1] += out
    return totals
