"""Source files and spans: every AST node and diagnostic points into one."""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from pathlib import Path

from .files import UnreadableFile, read_regular_file

SUFFIX = ".fmflow"
MAX_SOURCE_BYTES = 10 * 1024 * 1024  # docs/language.md: a flow file holds at most 10 MB
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Span:
    """A region of a source file: character offsets and 1-based line/column.

    ``end_line``/``end_col`` point one past the last character, like an
    editor selection.
    """

    path: str
    start: int
    end: int
    line: int
    col: int
    end_line: int
    end_col: int

    def __repr__(self) -> str:
        return f"Span({self.path}:{self.line}:{self.col}-{self.end_line}:{self.end_col})"

    def head(self, length: int) -> "Span":
        """The first ``length`` characters of a one-line start (a name at the front of a node)."""
        length = min(length, self.end - self.start)
        return Span(self.path, self.start, self.start + length, self.line, self.col, self.line, self.col + length)


_new_object = object.__new__


def new_span(path: str, start: int, end: int, line: int, col: int, end_line: int, end_col: int) -> Span:
    """``Span(...)``, three times faster: the parser makes one per node, and a frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``. The
    result is an ordinary Span (equal, hashed, frozen and copied like any other)."""
    span = _new_object(Span)
    fields = span.__dict__
    fields["path"] = path
    fields["start"] = start
    fields["end"] = end
    fields["line"] = line
    fields["col"] = col
    fields["end_line"] = end_line
    fields["end_col"] = end_col
    return span


@dataclass
class SourceFile:
    """The text of one ``.fmflow`` file and a line index to map offsets."""

    path: str
    text: str
    _line_starts: list[int] = field(default_factory=list, repr=False)
    # The file began with a UTF-8 byte order mark (not part of ``text``; `fmt` drops it).
    bom: bool = False

    def __post_init__(self) -> None:
        starts = [0]
        find = self.text.find
        i = find("\n")
        while i != -1:
            starts.append(i + 1)
            i = find("\n", i + 1)
        self._line_starts = starts

    @classmethod
    def read(cls, path: str | Path) -> "tuple[SourceFile, NotUtf8 | None]":
        """The file at ``path`` (see ``read_flow_bytes``) and where it stops being UTF-8, if it does.

        A file that is not UTF-8 gives only its text before the first bad
        byte, so that nothing after it is ever shown.
        """
        data = read_flow_bytes(path)
        bom = data.startswith(_BOM)
        if bom:
            data = data[len(_BOM):]
        try:
            return cls(str(path), data.decode("utf-8"), bom=bom), None
        except UnicodeDecodeError as error:
            good = data[:error.start].decode("utf-8")
            return cls(str(path), good, bom=bom), NotUtf8(len(good), data[error.start])

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, col) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line_index = bisect.bisect_right(self._line_starts, offset) - 1
        return line_index + 1, offset - self._line_starts[line_index] + 1

    def offset(self, line: int, col: int) -> int:
        line = max(1, min(line, len(self._line_starts)))
        return min(self._line_starts[line - 1] + col - 1, len(self.text))

    def span(self, start: int, end: int) -> Span:
        line, col = self.position(start)
        end_line, end_col = self.position(end)
        return Span(self.path, start, end, line, col, end_line, end_col)

    def line_text(self, line: int) -> str:
        if line < 1 or line > len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start:] if end == -1 else self.text[start:end]


@dataclass(frozen=True)
class NotUtf8:
    """Where a file stops being UTF-8: the offset in its decoded text, and the byte found."""

    offset: int
    byte: int


class SourceError(UnreadableFile):
    """A path that cannot be read as a flow file; the message says why, never what it holds."""


class SourceNotFound(SourceError, FileNotFoundError):
    """No file at that path (a FileNotFoundError too, as callers of the API expect)."""


def check_flow_name(path: str | Path) -> None:
    """Flow files are named ``*.fmflow``, and so is the file a link points to."""
    name = str(path)
    if not name.endswith(SUFFIX):
        raise SourceError(name, f"flow files end in '{SUFFIX}'")
    target = os.path.realpath(name)
    if not target.endswith(SUFFIX):
        raise SourceError(name, f"it links to a file whose name does not end in '{SUFFIX}'")


def read_flow_bytes(path: str | Path) -> bytes:
    """The bytes of a flow file: a regular ``*.fmflow`` file of at most MAX_SOURCE_BYTES."""
    check_flow_name(path)
    try:
        return read_regular_file(path, MAX_SOURCE_BYTES, "flow files")
    except UnreadableFile as error:
        missing = not os.path.lexists(path)
        raise (SourceNotFound if missing else SourceError)(error.path, error.reason) from None
