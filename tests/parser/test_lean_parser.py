"""The fast path of the parser (lexer.py, lalr.py, the AST callbacks) against Lark's own lexer and driver."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from lark.exceptions import UnexpectedCharacters
from lark.lexer import LexerState
from lark.utils import TextSlice

from fmflow import ast
from fmflow.lalr import FAILED
from fmflow.lexer import NoTerminalMatches
from fmflow.parser import NewlineFilter, lark_parser, lean_parser, parse_text
from fmflow.source import SourceFile, Span, new_span
from fmflow.transformer import begin_build

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "examples").rglob("*.fmflow")) + sorted((ROOT / "tests" / "roundtrip" / "corpus").glob("*.fmflow"))
TRICKY = [
    'flow f() {\r\n  x = 1 \t# a comment\r\n  return (x)\r\n}\n',
    'prompt p(a: str) -> str {\n  template: """\n    {{ a }}\n  """\n}\n',
    'model m { rate: 3/min, timeout: 10ms, t: 1.5e3, s: "a\\"b\\u{1F600}" }\n',
    'flow é(x: str) -> str { return "ü" }\n',
    'x $ y\n',
    'a = "never closed\n b',
]


def _tokens_from_lark(text: str) -> list:
    basic = lark_parser().parser.lexer.lexer
    found = []
    try:
        for token in basic.lex(LexerState(TextSlice.cast_from(text)), None):
            found.append(_token(token))
    except UnexpectedCharacters as error:
        found.append(("no terminal matches", error.pos_in_stream))
    return found


def _tokens_from_fast_lexer(text: str) -> list:
    found = []
    try:
        for token in lean_parser()._lexer.lex(text):
            found.append(_token(token))
    except NoTerminalMatches as error:
        found.append(("no terminal matches", error.args[0]))
    return found


def _token(token) -> tuple:
    return (token.type, str(token), token.start_pos, token.line, token.column, token.end_line, token.end_column,
            token.end_pos)


@pytest.mark.parametrize("text", [p.read_text(encoding="utf-8") for p in CORPUS[:20]] + TRICKY)
def test_the_fast_lexer_gives_lark_s_tokens_and_stops_where_lark_s_lexer_fails(text):
    assert _tokens_from_fast_lexer(text) == _tokens_from_lark(text)


def _everything(value) -> object:
    """A node with every field, spans and name spans included (equality leaves spans out)."""
    if isinstance(value, Span):
        return (value.start, value.end, value.line, value.col, value.end_line, value.end_col)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value).__name__, [(f.name, _everything(getattr(value, f.name))) for f in dataclasses.fields(value)]
    if isinstance(value, (list, tuple)):
        return [_everything(v) for v in value]
    return value


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_the_lean_driver_builds_what_lark_s_driver_builds(path):
    text = path.read_text(encoding="utf-8")
    source = SourceFile(str(path), text)
    begin_build(source)
    lean = lean_parser().parse(text)
    begin_build(source)
    lark = lark_parser().parse(text)
    assert lean is not FAILED
    assert _everything(lean) == _everything(lark)


def test_the_lean_driver_gives_up_where_lark_raises():
    assert lean_parser().parse("flow f( -> str { }") is FAILED
    assert lean_parser().parse("flow f() -> str { return $ }") is FAILED
    assert lean_parser().parse("") == []


def _flow_body(text: str) -> list:
    module, diagnostics = parse_text(text)
    assert diagnostics == []
    return module.decls[0].body


def _text(text: str, span: Span) -> str:
    return text[span.start:span.end]


def test_brackets_count_in_the_parent_s_span_not_in_the_expression_s():
    text = "flow f(x: int) -> int {\n  y = (x) + (1)\n  return ((y))\n}\n"
    assign, ret = _flow_body(text)
    assert _text(text, assign.span) == "y = (x) + (1)"
    assert _text(text, assign.value.span) == "(x) + (1)"
    assert _text(text, assign.value.left.span) == "x"
    assert _text(text, assign.value.right.span) == "1"
    assert _text(text, ret.span) == "return ((y))"
    assert _text(text, ret.value.span) == "y"
    assert (assign.span.line, assign.span.col, assign.span.end_line, assign.span.end_col) == (2, 3, 2, 16)


def test_spans_of_names_arms_and_closing_braces():
    text = 'flow f(x: int) -> int {\n  if x > 1 {\n    return 1\n  } elif x < 0 {\n    return 2\n  } else {\n  }\n  return x\n}\n'
    module, diagnostics = parse_text(text)
    assert diagnostics == []
    flow = module.decls[0]
    assert _text(text, flow.name_span) == "f"
    assert _text(text, flow.end_span) == "}" and flow.end_span.end == len(text) - 1
    branch_if, branch_elif = flow.body[0].branches
    assert _text(text, branch_if.span) == "if x > 1 {\n    return 1\n  }"
    assert _text(text, branch_elif.span).startswith("elif x < 0 {") and flow.body[0].orelse == []
    assert _text(text, flow.body[0].span).endswith("else {\n  }")
    assert isinstance(flow.body[1], ast.Return)


def test_what_building_finds_counts_only_for_the_parse_that_succeeds():
    text = 'flow f(x: str) -> str { return "\\q" + }\nflow g(x: str) -> str { return "\\w" }\n'
    module, diagnostics = parse_text(text)
    messages = [d.message for d in diagnostics]
    # The first flow is set aside for its syntax error: its bad escape is not reported.
    assert len(messages) == 2 and "unknown escape sequence '\\w'" in messages[1]
    assert [d.name for d in module.decls] == ["g"]


def test_the_newline_filter_reads_one_token_ahead_inside_brackets():
    """A character the lexer refuses right after a token is the error, before the parser sees the token."""
    _module, diagnostics = parse_text("flow f() -> str {\n  return = $\n}\n")
    assert len(diagnostics) == 1 and diagnostics[0].span.col == 12
    tokens = list(NewlineFilter().process(lean_parser()._lexer.lex("model m {\n  a: 1\n  b: 2\n}\n")))
    assert [t.type for t in tokens] == ["MODEL", "NAME", "LBRACE", "NAME", "COLON", "INT", "_NL",
                                        "NAME", "COLON", "INT", "RBRACE"]


def test_new_span_makes_an_ordinary_frozen_span():
    fast, slow = new_span("f.fmflow", 3, 9, 1, 4, 2, 1), Span("f.fmflow", 3, 9, 1, 4, 2, 1)
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow) and type(fast) is Span
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.start = 0  # type: ignore[misc]


def test_a_lark_whose_table_the_lean_driver_cannot_read_parses_through_lark_s_driver(monkeypatch):
    import fmflow.parser as parser

    def unreadable(*_args, **_kwargs):
        raise AttributeError("'ParsingFrontend' object has no attribute 'parser'")   # another Lark's layout

    expected = parse_text(TRICKY[1], "t.fmflow")
    monkeypatch.setattr(parser, "LeanParser", unreadable)
    parser.lean_parser.cache_clear()
    try:
        assert parser.lean_parser() is None
        module, diagnostics = parse_text(TRICKY[1], "t.fmflow")
        assert module == expected[0] and list(diagnostics) == list(expected[1])
    finally:
        parser.lean_parser.cache_clear()


def _same_match(one, other) -> bool:
    return (one is None and other is None) or (one is not None and other is not None and
                                                (one.lastgroup, one.group()) == (other.lastgroup, other.group()))


def test_each_first_character_s_regex_matches_what_the_master_regex_matches():
    import random

    lexer = lean_parser()._lexer
    master = lexer._master
    assert len(lexer._by_first_char) > 60  # letters, digits, quotes, operators… have their own
    rng = random.Random(7)
    pieces = ['"""x"""', '"a\\"b"', "3/min", "30s", "1.5e3", "2ms", "->", "==", "<=", "#c", "\r\n", "x_1",
              "model", "@", "é", "\t", "12", "7.", "-3", "\x0c", "'"]
    texts = [p.read_text(encoding="utf-8") for p in CORPUS] + TRICKY
    texts += ["".join(rng.choice(pieces + [chr(rng.randrange(128))]) for _ in range(60)) for _ in range(300)]
    for text in texts:
        for pos in range(len(text)):
            shortcut = lexer._by_first_char.get(text[pos], master.match)
            assert _same_match(shortcut(text, pos), master.match(text, pos)), (text, pos)


def test_without_the_expected_master_regex_every_character_takes_the_whole_of_it():
    import re

    from fmflow.lexer import first_char_regexes

    lexer = lean_parser()._lexer
    terminals = lexer._basic.scanner.terminals
    assert first_char_regexes(lexer._master, terminals)
    assert first_char_regexes(re.compile(lexer._master.pattern + "|(?P<X>x)"), terminals) == {}
