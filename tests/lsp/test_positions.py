"""Spans ↔ LSP positions: 0-based lines and UTF-16 columns."""

from __future__ import annotations

from lsprotocol import types

from fmflow.lsp.positions import offset_at, position_at, span_range, utf16_length, utf16_to_chars
from fmflow.source import SourceFile

TEXT = "ab\né🙂x\n\n中文 y"


def test_columns_count_utf16_units():
    source = SourceFile("t.fmflow", TEXT)
    x = TEXT.index("x")
    assert position_at(source, x) == types.Position(line=1, character=3)  # é is one unit, 🙂 two
    assert utf16_length("é🙂x") == 4
    y = TEXT.index("y")
    assert span_range(source, source.span(y, y + 1)) == types.Range(
        start=types.Position(line=3, character=3), end=types.Position(line=3, character=4))


def test_positions_map_back_to_offsets():
    source = SourceFile("t.fmflow", TEXT)
    for offset in range(len(TEXT) + 1):
        assert offset_at(source, position_at(source, offset)) == offset


def test_positions_outside_the_text_are_clamped():
    source = SourceFile("t.fmflow", TEXT)
    assert offset_at(source, types.Position(line=0, character=99)) == 2  # end of the first line
    assert offset_at(source, types.Position(line=40, character=0)) == len(TEXT)
    # Inside the surrogate pair of 🙂: after the character.
    assert utf16_to_chars("é🙂x", 2) == 2
    assert offset_at(source, types.Position(line=1, character=2)) == TEXT.index("x")
