"""Where outcomes go: files appended line by line, whose length a checkpoint can record.

A sink reports its ``position()`` (bytes written per file) so that a
checkpoint can store it in the same commit as the records it holds; on
resume, ``open_lines(path, position)`` cuts the file back to that length,
dropping a torn last line or lines written after the last commit (their
records were not checkpointed, so they run again).
"""

from __future__ import annotations

import os
from typing import Protocol

from .records import DataError, Outcome


class Sink(Protocol):
    def write(self, outcome: Outcome) -> None: ...
    def position(self) -> dict[str, int]: ...
    def flush(self) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...


class LineFile:
    """A file written by appending lines (bytes); counts its length as it goes."""

    def __init__(self, path: str, length: int = 0) -> None:
        self.path = path
        self.length = length
        self._file = open(path, "r+b" if length else "wb")
        if length:
            self._file.truncate(length)
            self._file.seek(length)

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.length += len(data)

    def flush(self) -> None:
        """Hand what is buffered to the OS (cheap; a crash of the process then loses nothing)."""
        self._file.flush()

    def sync(self) -> None:
        """Make what was flushed durable on disk (a power cut then loses nothing)."""
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def open_lines(path: str, length: int) -> LineFile:
    """Reopen ``path`` cut back to ``length`` bytes, its committed length.

    A file shorter than that was changed by something else since the commit:
    its lines can no longer be trusted, and resuming would lose records.
    """
    try:
        size = os.path.getsize(path)
    except OSError:
        size = -1
    if size < length:
        found = "is missing" if size < 0 else f"has {size} bytes"
        raise DataError(f"'{path}' {found}, but the checkpoint recorded {length} bytes of finished records: "
                        "it was changed or replaced since; start over with --overwrite")
    return LineFile(path, length)
