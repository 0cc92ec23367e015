"""Source files and spans: every AST node and diagnostic points into one."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path


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


@dataclass
class SourceFile:
    """The text of one ``.fmflow`` file and a line index to map offsets."""

    path: str
    text: str
    _line_starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        starts = [0]
        find = self.text.find
        i = find("\n")
        while i != -1:
            starts.append(i + 1)
            i = find("\n", i + 1)
        self._line_starts = starts

    @classmethod
    def read(cls, path: str | Path) -> "SourceFile":
        return cls(str(path), Path(path).read_text(encoding="utf-8"))

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
