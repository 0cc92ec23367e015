"""Spans (code points, 1-based) ↔ LSP positions (0-based lines, UTF-16 columns).

fmflow counts columns in characters (code points); LSP counts them in UTF-16
code units by default, so a character outside the Basic Multilingual Plane
(an emoji, many CJK extensions) is one column to fmflow and two to the
editor. Every conversion goes through this module.
"""

from __future__ import annotations

from lsprotocol import types

from ..source import SourceFile, Span


def utf16_length(text: str) -> int:
    """UTF-16 code units of ``text``."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def utf16_to_chars(line: str, units: int) -> int:
    """Characters of ``line`` that fill ``units`` UTF-16 code units (clamped to the line).

    A position in the middle of a surrogate pair counts as after the character.
    """
    count = 0
    for index, ch in enumerate(line):
        if count >= units:
            return index
        count += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


def position_at(source: SourceFile, offset: int) -> types.Position:
    """The LSP position of a character offset."""
    line, col = source.position(offset)
    prefix = source.line_text(line)[:col - 1]
    return types.Position(line=line - 1, character=utf16_length(prefix))


def span_range(source: SourceFile, span: Span) -> types.Range:
    """The LSP range of a span of ``source``."""
    return types.Range(start=position_at(source, span.start), end=position_at(source, span.end))


def offset_at(source: SourceFile, position: types.Position) -> int:
    """The character offset of an LSP position; positions past a line's end stop at its end."""
    lines = source.text.count("\n") + 1
    if position.line >= lines:
        return len(source.text)
    line = position.line + 1
    chars = utf16_to_chars(source.line_text(line), position.character)
    return source.offset(line, 1) + chars


def whole_range(source: SourceFile) -> types.Range:
    """A range covering the whole text."""
    return types.Range(start=types.Position(line=0, character=0), end=position_at(source, len(source.text)))
