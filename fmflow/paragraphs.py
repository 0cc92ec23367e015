"""Which line breaks of prose end something, and which only wrap a paragraph.

Text files wrap their paragraphs at a width (docs/*.md at 76 columns), so a
single newline inside a paragraph is a soft break: the sentence goes on. A
line break is hard when the next line is blank or starts a block of its own
(a list item ``-``/``*``/``1.``, a citation ``[1]``, a heading, a quote, a
table row, a code fence, a label such as ``Question:``), when the line
before stands alone (a heading, a table row, a fence), inside a fenced code
block, and after a markdown hard break (two trailing spaces or a backslash).

Used by the chunker (fmflow.retrieval.chunking) to cut at real boundaries
and by builtin:extractive to read whole sentences. Standard library only.
"""

from __future__ import annotations

import re

_BLOCK_START = re.compile(r"^\s*(?:[-*+\u2022]\s|\d{1,3}[.)]\s|\[\d{1,3}\]\s|#{1,6}\s|>|\||```|~~~"
                          r"|[A-Z][a-z]+(?: [a-z]+)?:\s)")
_STANDS_ALONE = re.compile(r"^\s*(?:#{1,6}\s|\||```|~~~)")
_FENCE = re.compile(r"^\s*(?:```|~~~)")


def hard_breaks(lines: list[str]) -> list[bool]:
    """For each line but the last: whether the break after it is hard (see the module doc)."""
    hard = []
    fenced = False
    for line, following in zip(lines, lines[1:]):
        if _FENCE.match(line):
            fenced = not fenced
        hard.append(_is_hard(line, following, fenced))
    return hard


def _is_hard(line: str, following: str, fenced: bool) -> bool:
    return (fenced or not line.strip() or not following.strip() or bool(_BLOCK_START.match(following))
            or bool(_STANDS_ALONE.match(line)) or line.endswith(("  ", "\\")))


class LineBreaks:
    """hard_breaks for one text without splitting it: asked about its newlines in increasing offsets,
    it reads one line at a time (the chunker streams texts of many megabytes)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.fenced = False          # inside a code fence before the line that starts at `start`
        self.start = 0               # the line whose end is `end`
        self.end = text.find("\n")

    def hard_at(self, newline: int) -> bool:
        """Whether the line break at offset ``newline`` is hard; a lone CR counts as hard."""
        if newline < 0:
            return True
        text = self.text
        while self.end != -1 and self.end < newline:
            if _FENCE.match(text[self.start:self.end]):
                self.fenced = not self.fenced
            self.start, self.end = self.end + 1, text.find("\n", self.end + 1)
        if self.end != newline:
            return True
        line = text[self.start:newline].rstrip("\r")
        after = text.find("\n", newline + 1)
        following = text[newline + 1:after if after != -1 else len(text)].rstrip("\r")
        return _is_hard(line, following, self.fenced != bool(_FENCE.match(line)))


def logical_lines(text: str) -> list[str]:
    """The lines of ``text`` with soft-wrapped paragraphs joined into one line each (blank lines kept)."""
    lines = text.splitlines()
    if not lines:
        return []
    joined = [lines[0]]
    for hard, line in zip(hard_breaks(lines), lines[1:]):
        if hard:
            joined.append(line)
        else:
            joined[-1] = joined[-1].rstrip() + " " + line.strip()
    return joined
