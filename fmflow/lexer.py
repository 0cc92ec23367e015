"""The parser's tokens, from Lark's own terminal regex walked in one tight loop.

Lark's basic lexer spends, per token, a scanner call, a line-counter object
update and two callback lookups: at 10k lines that was half of the parse.
``FastLexer`` matches with the very same compiled master regex (the same
terminals, in the same priority order), applies the same callbacks (keywords
out of NAME, comments to the parser's sink) and gives the same tokens with
the same positions. Where no terminal matches it gives up (NoTerminalMatches):
the parser then runs Lark's own lexer and parser, which raise the errors that
the syntax error messages read (see lalr.py).

Python's regex engine tries the master regex's alternatives one after the
other, about thirty of them. The lexer therefore looks at the next character
first and matches with the part of the master regex whose terminals can start
with it (``first_char_regexes``): the same alternatives, in the same order,
less those that cannot match there, so the same terminal wins.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator

from lark import Token
from lark.lexer import BasicLexer, PatternStr, UnlessCallback

# The regex parser and compiler behind `re`: private modules, read only to work out which
# characters a terminal can start with; any surprise there only turns the shortcut off.
from re import _compiler as _re_compiler, _constants as _re_constants, _parser as _re_parser

# Token's constructor without its check for a deprecated keyword argument, when Lark has it.
_new_token = getattr(Token, "_future_new", Token)
# The lexer sets a Token's fields itself when they are the ones this Lark's Token has.
_TOKEN_FIELDS_KNOWN = getattr(Token, "__slots__", None) == (
    "type", "start_pos", "value", "line", "column", "end_line", "end_column", "end_pos")
_new_str = str.__new__


class FastLexer:
    """The tokens a ``BasicLexer`` with a single master regex gives, for a whole text."""

    def __init__(self, basic: BasicLexer) -> None:
        scanner = basic.scanner  # also makes basic.callback (keywords, user callbacks)
        (self._master,) = scanner._mres  # ValueError for a grammar split over several regexes
        self._by_first_char = first_char_regexes(self._master, scanner.terminals)
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
        by_first_char = self._by_first_char.get
        newline_types, ignore_types, callbacks = self._newline_types, self._ignore_types, self._callbacks
        keywords = self._keywords
        pos, line, line_start, end = 0, 1, 0, len(text)
        while pos < end:
            found = by_first_char(text[pos], match)(text, pos)
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
                if _TOKEN_FIELDS_KNOWN:  # what Token's constructor does, without its Python call
                    token = _new_str(Token, value)
                    token.type = keywords[kind].get(value, kind) if kind in keywords else kind
                    token.start_pos, token.value, token.line, token.column = pos, value, line, pos - line_start + 1
                    token.end_line, token.end_column, token.end_pos = end_line, after - end_line_start + 1, after
                else:
                    token = _new_token(keywords[kind].get(value, kind) if kind in keywords else kind, value, pos,
                                       line, pos - line_start + 1, end_line, after - end_line_start + 1, after)
                if kind in callbacks:
                    token = callbacks[kind](token)
                if kind not in ignore_types:
                    yield token
            pos, line, line_start = after, end_line, end_line_start


def first_char_regexes(master: re.Pattern, terminals: list) -> dict[str, Callable[[str, int], Any]]:
    """{ASCII character: the ``match`` of the master regex cut down to the terminals that can
    start with it}. Other characters (and all, when the master regex is not the alternation
    of ``terminals`` this expects) are matched with the whole master regex."""
    alternatives = [f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in terminals]
    if "|".join(alternatives) != master.pattern:
        return {}
    firsts = [_first_chars(regexp, master.flags) for regexp in alternatives]
    compiled: dict[tuple[int, ...], Callable[[str, int], Any]] = {}
    table = {}
    for char in map(chr, range(128)):
        kept = tuple(i for i, first in enumerate(firsts) if first is None or char in first)
        if len(kept) == len(alternatives) or not kept:  # nothing to leave out, or nothing matches
            continue
        if kept not in compiled:
            compiled[kept] = re.compile("|".join(alternatives[i] for i in kept), master.flags).match
        table[char] = compiled[kept]
    return table


_ASCII = [chr(i) for i in range(128)]
_ONE_CHARACTER = {_re_constants.LITERAL, _re_constants.NOT_LITERAL, _re_constants.IN, _re_constants.ANY}
_REPEATS = {_re_constants.MAX_REPEAT, _re_constants.MIN_REPEAT, getattr(_re_constants, "POSSESSIVE_REPEAT", None)}
_ZERO_WIDTH = {_re_constants.AT, _re_constants.ASSERT, _re_constants.ASSERT_NOT}


def _first_chars(regexp: str, flags: int) -> set[str] | None:
    """The ASCII characters a match of ``regexp`` can start with; None when that is not known
    (flags, a construct not looked into, or an empty match): then it is tried everywhere."""
    try:
        parsed = _re_parser.parse(regexp, flags)
        if parsed.state.flags & ~(re.UNICODE | flags):
            return None
        first, can_be_empty = _first_of_sequence(list(parsed), parsed.state.flags)
    except Exception:  # _Unknown, or private modules of another shape than this Python's
        return None
    return None if can_be_empty else first


class _Unknown(Exception):
    """A construct whose first characters are not worked out."""


def _first_of_sequence(items: list, flags: int) -> tuple[set[str], bool]:
    first: set[str] = set()
    for item in items:
        chars, can_be_empty = _first_of_item(item, flags)
        first |= chars
        if not can_be_empty:
            return first, False
    return first, True


def _first_of_item(item: tuple, flags: int) -> tuple[set[str], bool]:
    op, arg = item
    if op in _ONE_CHARACTER:  # decided by trying each ASCII character on the item alone
        one = _re_compiler.compile(_re_parser.SubPattern(_re_parser.State(), [item]), flags)
        return {char for char in _ASCII if one.match(char)}, False
    if op is _re_constants.SUBPATTERN:
        _group, add_flags, del_flags, inner = arg
        if add_flags or del_flags:
            raise _Unknown
        return _first_of_sequence(list(inner), flags)
    if op is _re_constants.BRANCH:
        first, can_be_empty = set(), False
        for alternative in arg[1]:
            chars, empty = _first_of_sequence(list(alternative), flags)
            first |= chars
            can_be_empty = can_be_empty or empty
        return first, can_be_empty
    if op in _REPEATS:
        low, _high, inner = arg
        chars, empty = _first_of_sequence(list(inner), flags)
        return chars, empty or low == 0
    if op in _ZERO_WIDTH:  # a lookahead or anchor only narrows what follows
        return set(), True
    raise _Unknown


class NoTerminalMatches(Exception):
    """No terminal matches at this offset: Lark's lexer would raise UnexpectedCharacters here."""
