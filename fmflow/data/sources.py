"""Record sources: JSONL, CSV and Parquet files read as a stream of numbered records.

A source never holds the file in memory: JSONL is read line by line, CSV
row by row, Parquet one batch of rows at a time, so memory stays flat however
large the file is. ``scan()`` makes one streamed pass that counts the records
(for the progress bar) and hashes the bytes (so that a resumed job can tell
that its input changed).

Numbering: a JSONL record is numbered by its line in the file (blank lines
are not records but keep the numbering of the lines after them); a CSV or
Parquet record by its data row, from 1.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..files import not_a_regular_file
from ..types import STR, OptionalType, Type, strip_optional
from .records import DataError, Record

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_CHUNK = 1 << 20

Skip = Callable[[int], bool]


def _never(_line: int) -> bool:
    return False


@dataclass(frozen=True)
class Scan:
    records: int
    sha256: str


class Source:
    """A file of records. ``fields`` (name → type), when given, types CSV cells."""

    format = ""

    def __init__(self, path: str, fields: dict[str, Type] | None = None) -> None:
        self.path = path
        self.fields = fields or {}

    def check(self) -> None:
        """Raise DataError when the file cannot be read as this format at all."""

    def scan(self) -> Scan:
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return Scan(self.count(), digest.hexdigest())

    def count(self) -> int:
        return sum(1 for _ in self.records())

    def records(self, skip: Skip = _never) -> Iterator[Record]:
        raise NotImplementedError


def open_source(path: str, fields: dict[str, Type] | None = None) -> Source:
    """The source for a file, chosen by its extension; DataError when it cannot be read."""
    extension = os.path.splitext(path)[1].lower()
    kind = FORMATS.get(extension)
    if kind is None:
        known = ", ".join(sorted(FORMATS))
        raise DataError(f"cannot tell the format of '{path}' from its name (known: {known})")
    reason = not_a_regular_file(path)  # a FIFO is named, never waited on
    if reason is not None:
        raise DataError(f"cannot read '{path}': {reason}")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise DataError(f"cannot read '{path}': {error.strerror}") from None
    source = {"jsonl": JsonlSource, "csv": CsvSource, "parquet": ParquetSource}[kind](path, fields)
    source.check()
    return source


# ------------------------------------------------------------------ JSONL

class JsonlSource(Source):
    """One JSON object a line."""

    format = "jsonl"

    def scan(self) -> Scan:
        digest, count = hashlib.sha256(), 0
        with open(self.path, "rb") as f:
            for raw in f:
                digest.update(raw)
                count += not raw.isspace()
        return Scan(count, digest.hexdigest())

    def records(self, skip: Skip = _never) -> Iterator[Record]:
        with open(self.path, "rb") as f:
            for line, raw in enumerate(f, 1):
                if raw.isspace() or skip(line):
                    continue
                yield json_record(line, raw)


def json_record(line: int, raw: bytes) -> Record:
    """The record of one JSONL line: a JSON object, or a Record with the reason it is not one."""
    try:
        text = raw.rstrip(b"\r\n").decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as error:
        return Record(line, error=f"line {line} is not valid UTF-8 (byte {error.start + 1})")
    try:
        value = json.loads(text)
    except ValueError as error:
        where = f" at column {error.colno}" if isinstance(error, json.JSONDecodeError) else ""
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        return Record(line, error=f"line {line} is not valid JSON{where}: {reason}")
    if not isinstance(value, dict):
        return Record(line, error=f"line {line} must be a JSON object of the inputs, got {json_kind(value)}")
    return Record(line, value)


def json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "null" if value is None else type(value).__name__


# -------------------------------------------------------------------- CSV

class CsvSource(Source):
    """A header row of field names, then one record a row (cells typed by ``fields``)."""

    format = "csv"

    def check(self) -> None:
        with self._reader() as (reader, _text):
            try:
                header = next(reader, None)
            except (csv.Error, UnicodeError) as error:
                raise DataError(f"{self.path}: the header row cannot be read: {error}") from None
        if not header:
            return  # an empty file: no records
        names = [name.strip() for name in header]
        empty = [i + 1 for i, name in enumerate(names) if not name]
        if empty:
            raise DataError(f"{self.path}: column {empty[0]} of the header row has no name")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DataError(f"{self.path}: the header row names '{duplicates[0]}' twice")

    def count(self) -> int:
        return sum(1 for line, _ in self._rows() if line)

    def records(self, skip: Skip = _never) -> Iterator[Record]:
        header: list[str] = []
        for line, row in self._rows():
            if line == 0:
                header = row
            elif isinstance(row, str):
                yield Record(line, error=row)
            elif not skip(line):
                yield self._record(line, header, row)

    def _rows(self) -> Iterator[tuple[int, Any]]:
        """(0, header), then (n, cells) per data row, or (n, reason) for a row csv cannot read."""
        with self._reader() as (reader, _text):
            yield 0, [name.strip() for name in next(reader, None) or []]
            line = 0
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    line += 1
                    yield line, f"row {line} cannot be read as CSV: {error}"
                    continue
                if row:  # a blank line is not a data row
                    line += 1
                    yield line, row

    def _record(self, line: int, header: list[str], row: list[str]) -> Record:
        if len(row) != len(header):
            return Record(line, error=f"row {line} has {len(row)} cells, the header row has {len(header)}")
        try:
            "".join(row).encode("utf-8")
        except UnicodeEncodeError:
            return Record(line, error=f"row {line} is not valid UTF-8")
        return Record(line, {name: cell_value(cell, self.fields.get(name)) for name, cell in zip(header, row)})

    def _reader(self):
        return _CsvReader(self.path)


class _CsvReader:
    """csv.reader over the file; bytes that are not UTF-8 survive as surrogates and fail their row only."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self):
        csv.field_size_limit(sys.maxsize)  # a long text cell is data, not an attack on a batch job
        self._binary = open(self.path, "rb")
        self._text = io.TextIOWrapper(self._binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
        return csv.reader(self._text), self._text

    def __exit__(self, *exc) -> None:
        self._text.close()


def cell_value(text: str, t: Type | None) -> Any:
    """A CSV cell as a value for a field of type ``t``.

    Text fields take the cell as it is; other fields read it as JSON (`3`,
    `true`, `["a"]`), and keep the text when it is not JSON, so that
    validation says which type was expected. An empty cell is null for an
    optional field.
    """
    if t is None:
        return text
    if text == "" and isinstance(t, OptionalType):
        return None
    if strip_optional(t) == STR:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


# ---------------------------------------------------------------- Parquet

class ParquetSource(Source):
    """Rows of a Parquet file, read one batch at a time with pyarrow."""

    format = "parquet"
    BATCH = 1024

    def check(self) -> None:
        self._file()

    def count(self) -> int:
        return self._file().metadata.num_rows

    def records(self, skip: Skip = _never) -> Iterator[Record]:
        line = 0
        for batch in self._file().iter_batches(batch_size=self.BATCH):
            if all(skip(n) for n in range(line + 1, line + batch.num_rows + 1)):
                line += batch.num_rows
                continue
            for row in batch.to_pylist():
                line += 1
                if not skip(line):
                    yield Record(line, {key: _plain(value) for key, value in row.items()})

    def _file(self):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError("reading Parquet needs pyarrow: pip install pyarrow") from None
        try:
            return pq.ParquetFile(self.path)
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError… for a file that is not Parquet
            raise DataError(f"cannot read '{self.path}' as Parquet: {error}") from None


def _plain(value: Any) -> Any:
    """Parquet values as JSON data: dates and times as ISO text, decimals as numbers."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    try:
        return float(value)  # Decimal
    except (TypeError, ValueError):
        return str(value)
