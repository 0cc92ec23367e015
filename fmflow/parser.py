"""Text → AST: a cached Lark LALR parser, newline handling, syntax errors.

Syntax errors become E001 diagnostics. After an error the parser blanks out
the declaration that holds it and parses again, so one run reports an error
for every broken declaration while spans elsewhere stay exact.
"""

from __future__ import annotations

import gc
import re
import threading
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ast
from .diagnostics import Diagnostic, Diagnostics
from .lalr import FAILED, LeanParser
from .resources import grammar_path
from .source import SourceFile

MAX_SYNTAX_ERRORS = 20

KEYWORDS = frozenset(
    "import model type enum prompt retriever tool filter agent flow pipeline "
    "eval test if elif else for in return and or not true false null".split()
)
DECLARATION_KEYWORDS = ("import", "model", "type", "enum", "prompt", "retriever",
                        "tool", "filter", "agent", "flow", "pipeline", "test", "eval")

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {")", "]", "}"}
# After these a line cannot end a statement, so the newline is a continuation.
_CONTINUE_AFTER = {
    "(", "[", "{", ",", "=", ":", "->", "|", "+", "-", "*", "/", "%", "==", "!=",
    "<", "<=", ">", ">=", ".", "@", "and", "or", "not", "in", "if", "elif", "else",
    "for", "return",
}
# A statement or a block entry starts with one of these token types; before
# anything else a newline is a continuation of the line above.
_STARTS_LINE = {"NAME", "STRING", "BLOCK_STRING", "IF", "RETURN"} | {k.upper() for k in KEYWORDS} - {
    "ELSE", "ELIF", "AND", "OR", "NOT", "IN", "FOR"}


class NewlineFilter:
    """Lark post-lexer: keeps only the newlines that separate things.

    Newlines count inside ``{ }`` (statements, block entries) and nowhere
    else: not inside ``( )`` or ``[ ]``, not between top-level declarations,
    not after an operator or comma, and not before ``}``, ``else`` or an
    operator that continues the expression.
    """

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        stack: list[str] = []
        previous: Token | None = None
        pending_newline: Token | None = None
        stream = iter(stream)
        held: list[Token] = []  # the next token, read ahead inside brackets (is a keyword a `key:`?)
        while True:
            token = held.pop() if held else next(stream, None)
            if token is None:
                return
            if token.type == "_NL":
                if stack and stack[-1] == "{" and pending_newline is None:
                    if previous is not None and previous.value not in _CONTINUE_AFTER:
                        pending_newline = token
                continue
            if stack:
                # Read ahead before the parser sees this token, always: a character the
                # lexer refuses right after it is the error reported, as it always was.
                following = next(stream, None)
                if following is not None:
                    held.append(following)
                if token.column == 1 and _opens_declaration(token, following):
                    # `model`/`flow`/… at column 1 and not a `key:`: a new declaration,
                    # so the one above is unclosed. A token type the grammar does not
                    # know makes the parser stop right here, with a clear message.
                    token = Token.new_borrow_pos(DECLARATION_START, token.value, token)
                    stack.clear()
            if pending_newline is not None:
                if token.type in _STARTS_LINE:
                    yield pending_newline
                pending_newline = None
            value = token.value
            if token.type not in ("STRING", "BLOCK_STRING"):
                if value in _OPENERS:
                    stack.append(value)
                elif value in _CLOSERS and stack:
                    stack.pop()
            previous = token
            yield token


DECLARATION_START = "DECLARATION_START"


def _opens_declaration(token: Token, following: Token | None) -> bool:
    return (token.column == 1 and token.value in DECLARATION_KEYWORDS and token.type == token.value.upper()
            and (following is None or following.value != ":"))


class _CommentSink(threading.local):
    def __init__(self) -> None:
        self.tokens: list[Token] = []


_comments = _CommentSink()


_BUILD_OPTIONS = dict(parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=False)


@lru_cache(maxsize=1)
def lark_parser() -> Lark:
    """The parser, from tables kept in a private per-user cache (see parse_tables.py)."""
    from .parse_tables import load_or_build, table_key

    grammar = grammar_path().read_text(encoding="utf-8")
    # Given again at load: the post-lexer and callbacks are code, never stored.
    runtime_options = dict(postlex=NewlineFilter(), propagate_positions=True,
                           lexer_callbacks={"COMMENT": lambda tok: _comments.tokens.append(tok)})

    def build() -> Lark:
        return Lark(grammar, **{**_BUILD_OPTIONS, **runtime_options})

    def load(tables: dict) -> Lark:
        # Lark.load takes no options; its _load (what Lark's own cache calls) does.
        return Lark.__new__(Lark)._load(tables, **runtime_options)

    return _building_the_ast(load_or_build(table_key(grammar, _BUILD_OPTIONS), build, load))


def _building_the_ast(parser: Lark) -> Lark:
    """Let the LALR parser build fmflow's AST as it reduces (see transformer.py), not a Lark tree."""
    from .transformer import ast_callbacks

    callbacks = ast_callbacks(parser.rules)
    frontend = parser.parser
    frontend.parser_conf.callbacks = callbacks
    frontend.parser.parser.callbacks = callbacks  # the LALR driver's own reference
    return parser


@lru_cache(maxsize=1)
def lean_parser() -> LeanParser | None:
    """The lean driver on Lark's parse table; None when this Lark keeps its table in another
    shape than the one LeanParser reads (then Lark's own driver parses every file)."""
    from .transformer import PASS_THROUGH

    try:
        return LeanParser(lark_parser(), PASS_THROUGH)
    except (AttributeError, KeyError, TypeError):
        return None


@contextmanager
def collector_paused():
    """Parsing allocates many small objects that all stay alive; the cyclic
    garbage collector would rescan them again and again (a 100k-line file
    parses 2.4x slower with it on), and there is no garbage to find."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_source(source: SourceFile, diagnostics: Diagnostics) -> ast.Module:
    """Parse a source file; syntax errors go to ``diagnostics``.

    Always returns a Module: declarations that failed to parse are left out.
    Text holding a lone surrogate (possible in a Python str, never in a
    UTF-8 file) is one E001 there and is not parsed: it could not be written
    out or sent anywhere.
    """
    surrogate = _SURROGATE.search(source.text)
    if surrogate is not None:
        from .transformer import SURROGATE_HELP

        diagnostics.add("E001", f"U+{ord(surrogate.group()):04X} is a lone surrogate, not a character",
                        source.span(surrogate.start(), surrogate.end()), SURROGATE_HELP)
        return _empty_module(source)
    with collector_paused():
        return _parse_source(source, diagnostics)


def parse_file(path: str, diagnostics: Diagnostics) -> tuple[SourceFile, ast.Module]:
    """Read and parse a flow file; raises SourceError when it cannot be read at all.

    A file that is not UTF-8 is one E001 at its first bad byte, and is not parsed.
    """
    source, not_utf8 = SourceFile.read(path)
    if not_utf8 is None:
        return source, parse_source(source, diagnostics)
    diagnostics.add("E001", f"byte 0x{not_utf8.byte:02X} is not valid UTF-8",
                    source.span(not_utf8.offset, not_utf8.offset), "fmflow files are UTF-8 text; save it as UTF-8")
    return source, _empty_module(source)


def _empty_module(source: SourceFile) -> ast.Module:
    return ast.Module(source.path, [], [], [], recovered=True, span=source.span(0, len(source.text)))


def _parse_source(source: SourceFile, diagnostics: Diagnostics) -> ast.Module:
    from .doc_comments import attach_doc_comments
    from .nesting import check_nesting
    from .transformer import begin_build, build_module

    working = source.text
    tree = None
    errors = 0
    while tree is None:
        _comments.tokens = []
        begin_build(source)
        lean = lean_parser()
        tree = lean.parse(working) if lean is not None else FAILED
        if tree is not FAILED:
            break
        tree = None
        _comments.tokens = []  # Lark's driver parses again, to raise its own error
        begin_build(source)
        try:
            tree = lark_parser().parse(working)
        except UnexpectedInput as error:
            diagnostic = syntax_error(error, source, working)
            diagnostics.extend([diagnostic])
            errors += 1
            blanked = _blank_broken_declaration(working, min(diagnostic.span.start, _error_offset(error, working)))
            if blanked == working or errors >= MAX_SYNTAX_ERRORS:
                return _empty_module(source)
            working = blanked
    comments = [_comment(tok, source) for tok in _comments.tokens]
    _comments.tokens = []
    module = build_module(tree, source, diagnostics, comments)
    module.recovered = errors > 0
    attach_doc_comments(module, source)
    check_nesting(module, source, diagnostics)  # from here on every phase may recurse safely
    return module


def _comment(token: Token, source: SourceFile) -> ast.Comment:
    line_prefix = source.line_text(token.line)[: token.column - 1]
    return ast.Comment(str(token).rstrip(), token.line, token.column, own_line=not line_prefix.strip())


def _error_offset(error: UnexpectedInput, text: str) -> int:
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        pos = error.token.start_pos
        return pos if pos is not None else len(text)
    if isinstance(error, UnexpectedCharacters):
        return error.pos_in_stream
    return len(text)


_DECL_LINE = re.compile(r"^(?:%s)\b" % "|".join(DECLARATION_KEYWORDS), re.M)


def _blank_broken_declaration(text: str, offset: int) -> str:
    """Replace the declaration around ``offset`` by spaces, keeping newlines.

    A declaration starts at a line that begins (column 1) with a declaration
    keyword; the broken one runs from the last such line at or before the
    error to the next such line after it.
    """
    starts = [m.start() for m in _DECL_LINE.finditer(text)]
    if offset in starts:
        # A declaration keyword where it cannot be: the declaration above is unclosed.
        begin = max((s for s in starts if s < offset), default=0)
        return text[:begin] + re.sub(r"[^\n]", " ", text[begin:offset]) + text[offset:]
    begin = max((s for s in starts if s <= offset), default=0)
    line_end = text.find("\n", offset)
    after = line_end + 1 if line_end != -1 else len(text)
    end = min((s for s in starts if s >= after), default=len(text))
    if begin == end:
        return text
    region = re.sub(r"[^\n]", " ", text[begin:end])
    return text[:begin] + region + text[end:]


# -------------------------------------------------------------- error wording

def syntax_error(error: UnexpectedInput, source: SourceFile, working: str) -> Diagnostic:
    from .syntax_errors import describe_syntax_error, describe_unclosed_string, unclosed

    offset = _error_offset(error, working)
    string, brackets = unclosed(working, min(offset + 1, len(working)))
    if string is not None:
        # A string never closed swallows what follows; the lexer fails later, somewhere unhelpful.
        message, help_text = describe_unclosed_string(string, working)
        return Diagnostic("E001", message, source.span(string.offset, string.offset + len(string.text)), help_text)
    length = 1
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        length = max(1, len(str(error.token).split("\n")[0]))
    if offset >= len(working):
        # At end of file, point at the last character rather than past it.
        offset = max(0, len(working.rstrip()) - 1)
        length = 1
    message, help_text = describe_syntax_error(error, working, brackets)
    return Diagnostic("E001", message, source.span(offset, offset + length), help_text)


def parse_text(text: str, path: str = "<string>") -> tuple[ast.Module, list[Diagnostic]]:
    """Parse text into a Module; returns it with any syntax diagnostics."""
    diagnostics = Diagnostics()
    module = parse_source(SourceFile(path, text), diagnostics)
    return module, diagnostics.sorted()


__all__ = ["parse_file", "parse_source", "parse_text", "lark_parser", "KEYWORDS", "UnexpectedEOF"]
