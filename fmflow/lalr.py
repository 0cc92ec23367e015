"""A lean LALR driver on Lark's own parse table, for files that parse.

Lark's driver looks up, per reduction, the rule's callback in a dict keyed by
Rule objects (hashed and compared in Python) and the rule's length and name
through attributes. ``LeanParser`` turns the table into plain tuples once
(shift target, or the rule's length, name and callback) and runs the same
shift/reduce loop over them, calling the same callbacks in the same order.

Its tokens come from ``FastLexer`` (lexer.py) through the same post-lexer.
It only ever reports success. At the first token the table refuses, or a
character no terminal matches, it returns FAILED and the caller parses again
with Lark's own lexer and driver, which raise Lark's usual exception, with
the parser state that the syntax error messages read.
"""

from __future__ import annotations

from typing import Any

from lark import Lark
from lark.parsers.lalr_analysis import Shift

from .lexer import FastLexer, NoTerminalMatches

FAILED = object()


class LeanParser:
    def __init__(self, parser: Lark, pass_through: Any = None, start: str = "start") -> None:
        """``pass_through``: the callback of rules that give their one child as it is
        (``a -> b``); their reductions only change the state."""
        frontend = parser.parser
        table = frontend.parser._parse_table
        callbacks = frontend.parser.parser.callbacks
        lexer = frontend.lexer  # Lark's lexer, under its post-lexer when it has one
        self._postlexer = getattr(lexer, "postlexer", None)
        self._lexer = FastLexer(getattr(lexer, "lexer", lexer))
        self._start_state = table.start_states[start]
        self._end_state = table.end_states[start]
        reductions: dict[int, tuple] = {}
        self._pass_through_ends: dict[tuple, Any] = {}
        self._actions: dict[Any, dict[str, tuple[bool, Any]]] = {}
        for state, row in table.states.items():
            entries = {}
            for symbol, (action, arg) in row.items():
                if action is Shift:
                    entries[symbol] = (True, arg)
                else:
                    reduction = reductions.get(id(arg))
                    if reduction is None:
                        callback = callbacks[arg]
                        size = len(arg.expansion)
                        if size == 1 and callback is pass_through:
                            callback = None
                        reduction = reductions[id(arg)] = (size, arg.origin.name, callback)
                    entries[symbol] = (False, reduction)
            self._actions[state] = entries

    def _after_pass_through(self, below: Any, top: Any, lookahead: str) -> Any:
        """The top state after every pass-through reduction that ``lookahead`` makes in a row
        (`name` → `atom` → `postfix` → … → `expr`: ten per operand). They leave the state
        below as it is, so the three states decide it: worked out once, then looked up."""
        key = (below, top, lookahead)
        found = self._pass_through_ends.get(key)
        if found is None:
            actions, found = self._actions, top
            while True:
                entry = actions[found].get(lookahead)
                if entry is None or entry[0] or entry[1][2] is not None:
                    break
                found = actions[below][entry[1][1]][1]
            self._pass_through_ends[key] = found
        return found

    def parse(self, text: str) -> Any:
        """What the start rule's callback gives, or FAILED where Lark's parser would raise."""
        tokens = self._lexer.lex(text)
        if self._postlexer is not None:
            tokens = self._postlexer.process(tokens)
        try:
            return self._run(tokens)
        except NoTerminalMatches:
            return FAILED

    def _run(self, tokens) -> Any:
        actions = self._actions
        states: list = [self._start_state]
        values: list = []
        for token in tokens:
            while True:
                entry = actions[states[-1]].get(token.type)
                if entry is None:
                    return FAILED
                shift, arg = entry
                if shift:
                    states.append(arg)
                    values.append(token)
                    break
                size, origin, callback = arg  # a reduction (written out here: it runs for every rule)
                if callback is None:  # the child stays on the stack as the rule's value
                    states[-1] = self._after_pass_through(states[-2], states[-1], token.type)
                    continue
                if size:
                    children = values[-size:]
                    del states[-size:]
                    del values[-size:]
                else:
                    children = []
                values.append(callback(children))
                states.append(actions[states[-1]][origin][1])
        while True:  # the end of the text: reduce what is left, up to the start rule
            entry = actions[states[-1]].get("$END")
            if entry is None or entry[0]:
                return FAILED
            size, origin, callback = entry[1]
            children = values[-size:] if size else []
            if size:
                del states[-size:]
                del values[-size:]
            values.append(children[0] if callback is None else callback(children))
            states.append(actions[states[-1]][origin][1])
            if states[-1] == self._end_state:
                return values[-1]
