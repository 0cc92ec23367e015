"""The parser's tokens, from Lark's own terminal regex walked in one tight loop.

Lark's basic lexer spends, per token, a scanner call, a line-counter object
update and two callback lookups: at 10k lines that was half of the parse.
``FastLexer`` matches with the very same compiled master regex (the same
terminals, in the same priority order), applies the same callbacks (keywords
out of NAME, comments to the parser's sink) and gives the same tokens with
the same positions. Where no terminal matches it gives up (NoTerminalMatches):
the parser then runs Lark's own lexer and parser, which raise the errors that
the syntax error messages read (see lalr.py).
"""

from __future__ import annotations

from typing import Iterator

from lark import Token
from lark.lexer import BasicLexer, PatternStr, UnlessCallback

# Token's constructor without its check for a deprecated keyword argument, when Lark has it.
_new_token = getattr(Token, "_future_new", Token)


class FastLexer:
    """The tokens a ``BasicLexer`` with a single master regex gives, for a whole text."""

    def __init__(self, basic: BasicLexer) -> None:
        scanner = basic.scanner  # also makes basic.callback (keywords, user callbacks)
        (self._master,) = scanner._mres  # ValueError for a grammar split over several regexes
        self._basic = basic
        self._newline_types = frozenset(basic.newline_types)
        self._ignore_types = frozenset(basic.ignore_types)
        self._callbacks = dict(basic.callback)
        # Keywords that a terminal's regex also matches (`model` is a NAME too): Lark
        # renames such tokens in a callback, by a whole-text regex match; a dict says the same.
        self._keywords: dict[str, dict[str, str]] = {}
        for kind, callback in basic.callback.items():
            if isinstance(callback, UnlessCallback) and all(
                    isinstance(t.pattern, PatternStr) and not t.pattern.flags for t in callback.scanner.terminals):
                self._keywords[kind] = {t.pattern.value: t.name for t in callback.scanner.terminals}
                del self._callbacks[kind]

    def lex(self, text: str) -> Iterator[Token]:
        """The tokens of ``text``; NoTerminalMatches where Lark's lexer would raise."""
        match = self._master.match
        newline_types, ignore_types, callbacks = self._newline_types, self._ignore_types, self._callbacks
        keywords = self._keywords
        pos, line, line_start, end = 0, 1, 0, len(text)
        while pos < end:
            found = match(text, pos)
            if found is None:
                raise NoTerminalMatches(pos)
            kind, value, after = found.lastgroup, found.group(), found.end()
            end_line, end_line_start = line, line_start
            if kind in newline_types:
                newlines = value.count("\n")
                if newlines:
                    end_line += newlines
                    end_line_start = pos + value.rindex("\n") + 1
            if kind not in ignore_types or kind in callbacks:
                token = _new_token(keywords[kind].get(value, kind) if kind in keywords else kind, value, pos, line,
                                   pos - line_start + 1, end_line, after - end_line_start + 1, after)
                if kind in callbacks:
                    token = callbacks[kind](token)
                if kind not in ignore_types:
                    yield token
            pos, line, line_start = after, end_line, end_line_start


class NoTerminalMatches(Exception):
    """No terminal matches at this offset: Lark's lexer would raise UnexpectedCharacters here."""
