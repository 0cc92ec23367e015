"""The parser's tokens, from Lark's own terminal regex walked in one tight loop.

Lark's basic lexer spends, per token, a scanner call, a line-counter object
update and two callback lookups: at 10k lines that was half of the parse.
``FastLexer`` matches with the very same compiled master regex (the same
terminals, in the same priority order), applies the same callbacks (keywords
out of NAME, comments to the parser's sink) and gives the same tokens with
the same positions. Where no terminal matches, it hands over to Lark's lexer
at that place, which raises its usual UnexpectedCharacters (the syntax error
messages read it).
"""

from __future__ import annotations

from typing import Any, Iterator

from lark import Token
from lark.lexer import BasicLexer, LexerState


class FastLexer:
    """A stand-in for a ``BasicLexer`` with a single master regex (``lex`` only)."""

    def __init__(self, basic: BasicLexer) -> None:
        scanner = basic.scanner  # also makes basic.callback (keywords, user callbacks)
        (self._master,) = scanner._mres  # ValueError for a grammar split over several regexes
        self._basic = basic
        self._newline_types = frozenset(basic.newline_types)
        self._ignore_types = frozenset(basic.ignore_types)
        self._callbacks = dict(basic.callback)

    def lex(self, state: LexerState, parser_state: Any) -> Iterator[Token]:
        match = self._master.match
        newline_types, ignore_types, callbacks = self._newline_types, self._ignore_types, self._callbacks
        counter = state.line_ctr
        text, end = state.text.text, state.text.end
        pos, line, line_start = counter.char_pos, counter.line, counter.line_start_pos
        while pos < end:
            found = match(text, pos, end)
            if found is None:
                counter.char_pos, counter.line, counter.line_start_pos = pos, line, line_start
                counter.column = pos - line_start + 1
                self._basic.next_token(state, parser_state)  # raises UnexpectedCharacters
                raise AssertionError("Lark's lexer matched where its own regex did not")  # pragma: no cover
            kind, value, after = found.lastgroup, found.group(), found.end()
            end_line, end_line_start = line, line_start
            if kind in newline_types:
                newlines = value.count("\n")
                if newlines:
                    end_line += newlines
                    end_line_start = pos + value.rindex("\n") + 1
            if kind in ignore_types and kind not in callbacks:
                pos, line, line_start = after, end_line, end_line_start
                continue
            token = Token(kind, value, pos, line, pos - line_start + 1, end_line, after - end_line_start + 1, after)
            if kind in callbacks:
                token = callbacks[kind](token)
            pos, line, line_start = after, end_line, end_line_start
            if kind not in ignore_types:
                # Where Lark's lexer would be: an error report or a resumed parse reads it.
                counter.char_pos, counter.line, counter.line_start_pos = pos, line, line_start
                counter.column = pos - line_start + 1
                state.last_token = token
                yield token
        counter.char_pos, counter.line, counter.line_start_pos = pos, line, line_start
        counter.column = pos - line_start + 1
