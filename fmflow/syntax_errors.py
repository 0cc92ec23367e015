"""Wording of syntax errors (E001).

The message always says what was found and what was expected. Where the
parser state matches one of the example bad inputs below (Lark's
``match_examples``), a ``help:`` line names the likely fix. The table is
tested as a table in tests/diagnostics/test_syntax_errors.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

# label (the help text) → example inputs that fail in the same parser state.
EXAMPLES: dict[str, list[str]] = {
    "block entries are written 'key: value'": [
        'model m { provider "openai" }',
        'model m { name: "x"\n provider "openai" }',
        'retriever r { k: 2, collection "docs" }',
        'retriever kb { collection "docs" }',
        'test t { flow f }',
    ],
    "type fields are written 'name: TYPE'": [
        "type T { a str }",
        "type T { a: str\n b int }",
    ],
    "a flow, prompt, agent, tool or filter needs a return type: '-> TYPE'": [
        "flow f(x: str) { return x }",
        "prompt p(x: str) { }",
        "agent a(x: str) { }",
        'tool t(x: str) = python("m:f")',
    ],
    "each parameter needs a type: 'name: TYPE'": [
        "flow f(x) -> str { return x }",
        "prompt p(x, y: str) -> str { }",
    ],
    "a block is missing its closing '}'": [
        'model m { provider: "openai"',
        "flow f(x: str) -> str { return x",
        "type T { a: str",
    ],
    "a call or group is missing its closing ')'": [
        "flow f(x: str) -> str { return g(x }",
        "flow f(x: str) -> str { y = (x + 1 }",
    ],
    "a list is missing its closing ']'": [
        "flow f(x: str) -> str { y = [x, x }",
        "model m { fallback: [a, b }",
    ],
    "statements in a flow are assignments 'name = value', 'if', or 'return'": [
        "flow f(x: str) -> str { x + 1 }",
        "flow f(x: str) -> str { g(x) }",
        "flow f(x: str) -> str { 1 }",
        'flow f(x: str) -> str { "text" }',
        "flow f(x: str) -> str { [x] }",
    ],
    "declarations start with import, model, type, enum, prompt, retriever, tool, filter, agent, flow, test or eval": [
        "function f() {}",
        "x = 1",
        "def f(): pass",
    ],
    "separate statements with a new line": [
        "flow f(x: str) -> str { y = x return y }",
    ],
    "separate block entries with a comma or a new line": [
        'model m { provider: "openai" name: "x" }',
    ],
    "tool and filter declarations end with '= python(\"module:attr\")'": [
        "tool t(x: str) -> str",
        "tool t(x: str) -> str { }",
        "filter f(x: str) -> str python(\"m:f\")",
    ],
    "an if needs a condition and a block in braces: 'if COND { … }'": [
        "flow f(x: str) -> str { if x return x }",
        "flow f(x: str) -> str { if { return x } }",
    ],
    "write '==' to compare; '=' only assigns": [
        "flow f(x: str) -> str { if x = 1 { return x } }",
    ],
    "prompt versions are written NAME@N with N a whole number": [
        "prompt p@ (x: str) -> str { }",
        "prompt p@v2 (x: str) -> str { }",
    ],
}

_FRIENDLY = {
    "NAME": "a name",
    "STRING": "a string",
    "BLOCK_STRING": "a block string",
    "INT": "a whole number",
    "FLOAT": "a decimal number",
    "DURATION": "a duration",
    "RATE": "a rate",
    "_NL": "a new line",
    "$END": "the end of the file",
    "COMP_OP": "a comparison",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "MUL_OP": "an operator",
    "OPTIONAL": "'?'",
    "_COMMA": "','",
}
_FOUND_KINDS = {"STRING": "string", "BLOCK_STRING": "block string", "INT": "number", "FLOAT": "decimal number",
                "DURATION": "duration", "RATE": "rate"}
# Tokens that can start an expression: when they are all expected, say so.
_EXPRESSION_STARTS = {"NAME", "STRING", "INT", "FLOAT", "LSQB", "LBRACE", "LPAR", "TRUE", "FALSE", "NULL"}


_DECLARATION_TERMINALS = ("IMPORT", "MODEL", "TYPE", "ENUM", "PROMPT", "RETRIEVER", "TOOL", "FILTER",
                          "AGENT", "FLOW", "PIPELINE", "TEST", "EVAL")
# Tokens that continue an expression: listed one by one they bury the message.
_OPERATORS = {"PLUS", "MINUS", "MUL_OP", "COMP_OP", "DOT", "LPAR", "LSQB", "AT", "AND", "OR", "IF",
              "IN", "NOT", "VBAR"}


def _terminal_text(name: str) -> str:
    if name in _FRIENDLY:
        return _FRIENDLY[name]
    from .parser import lark_parser

    try:
        pattern = lark_parser().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    if pattern.type == "str":
        return f"'{pattern.value}'"
    return name.lower()


def _found_text(error: UnexpectedInput, text: str) -> str:
    if isinstance(error, UnexpectedCharacters):
        return f"character {text[error.pos_in_stream]!r}"
    if isinstance(error, UnexpectedToken):
        token = error.token
        if token.type == "$END":
            return "end of file"
        if token.type == "_NL":
            return "a new line"
        value = str(token).split("\n")[0]
        if len(value) > 30:
            value = value[:27] + "..."
        if token.type == "NAME":
            return f"name '{value}'"
        if token.type in _FOUND_KINDS:
            return f"{_FOUND_KINDS[token.type]} {value}"
        if value.isidentifier():
            return f"keyword '{value}'"
        return f"'{value}'"
    return "end of file"


def expected_text(expected: set[str]) -> str:
    names = set(expected)
    parts: list[str] = []
    if set(_DECLARATION_TERMINALS) <= names:
        parts.append("a declaration (" + ", ".join(_DECLARATION_TERMINALS).lower() + ")")
        names -= set(_DECLARATION_TERMINALS)
    if _EXPRESSION_STARTS <= names:
        parts.append("an expression")
        names -= _EXPRESSION_STARTS | {"MINUS", "NOT", "BLOCK_STRING", "DURATION", "RATE"}
    operators = names & _OPERATORS
    if len(operators) >= 3:
        parts.append("an operator")
        names -= _OPERATORS
    # Keywords accepted as block keys would drown the message; a key is "a name".
    if {"NAME", "MODEL", "FLOW"} <= names:
        names = {n for n in names if not (n.isupper() and n.isalpha() and n not in ("NAME", "RBRACE"))} | {"NAME"}
    texts = sorted({_terminal_text(n) for n in names}, key=lambda t: (not t.startswith("'"), t))
    parts += texts
    if not parts:
        return "something else"
    if len(parts) > 8:
        parts = parts[:8] + ["…"]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def describe_syntax_error(error: UnexpectedInput, text: str,
                          brackets: "list[Opening] | None" = None) -> tuple[str, str | None]:
    """(message, help) for a Lark error raised while parsing ``text``.

    ``brackets``: the brackets still open where the error is (``unclosed``),
    so that a help about a missing closing bracket says which one.
    """
    # ``accepts`` (after the parser's pending reductions) is exact; ``expected``
    # may hold look-aheads merged from other states.
    expected = set(getattr(error, "accepts", None) or getattr(error, "expected", None)
                   or getattr(error, "allowed", None) or ())
    found = _found_text(error, text)
    innermost = brackets[-1] if brackets else None
    if _starts_declaration(error):
        help_text = UNCLOSED_ABOVE_HELP if innermost is None else _never_closed(innermost, text)
        return f"unexpected {found} at the start of a line; the declaration above is not finished", help_text
    if isinstance(error, UnexpectedCharacters):
        # The lexer runs ahead of the parser, so it cannot say what the parser expects.
        return f"unexpected {found}", _character_help(text[error.pos_in_stream])
    else:
        message = f"unexpected {found}; expected {expected_text(expected)}"
    if _keyword_for_name(error, expected):
        return message, KEYWORD_AS_NAME_HELP
    help_text = _match_help(error)
    if innermost is not None and _CLOSER_TERMINALS[innermost.text] in expected \
            and (help_text in _CLOSING_LABELS or (help_text is None and _past_the_line_of(error, innermost, text))):
        help_text = f"{_CLOSING_LABELS.get(help_text, _LABEL_OF_OPENER[innermost.text])}: " \
                    + _never_closed(innermost, text)
    return message, help_text


UNCLOSED_ABOVE_HELP = "a closing '}' or ')' may be missing in the declaration above"
_LABEL_OF_OPENER = {"{": "a block is missing its closing '}'", "(": "a call or group is missing its closing ')'",
                    "[": "a list is missing its closing ']'"}
_CLOSING_LABELS = {label: label for label in _LABEL_OF_OPENER.values()}
_CLOSER_TERMINALS = {"{": "RBRACE", "(": "RPAR", "[": "RSQB"}


def _past_the_line_of(error: UnexpectedInput, opening: "Opening", text: str) -> bool:
    """The error is at the end of the file or on a later line than ``opening``: it may be what is missing."""
    token = getattr(error, "token", None)
    if token is None or token.type == "$END":
        return True
    return token.line is not None and token.line > _line_col(text, opening.offset)[0]


def _never_closed(opening: "Opening", text: str) -> str:
    line, col = _line_col(text, opening.offset)
    return f"the '{opening.text}' at line {line}, column {col} is never closed"


def _line_col(text: str, offset: int) -> tuple[int, int]:
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


# ------------------------------------------------------- unclosed strings, brackets

@dataclass(frozen=True)
class Opening:
    """Something opened and not closed: ``\"\"\"``, ``"``, ``(``, ``[`` or ``{``, at ``offset``."""

    text: str
    offset: int


_SIGNIFICANT = re.compile(r'[#"(\[{)\]}]')
_STRING = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"')  # the grammar's STRING (an unrolled loop)
_OPENER_OF = {")": "(", "]": "[", "}": "{"}


def unclosed(text: str, end: int) -> tuple[Opening | None, list[Opening]]:
    """What is still open at offset ``end``, read the way the lexer reads:
    a string that is never closed (after which nothing is reliable), and the
    stack of open brackets outside strings and comments."""
    brackets: list[Opening] = []
    position = 0
    while True:
        found = _SIGNIFICANT.search(text, position, end)
        if found is None:
            return None, brackets
        position, char = found.start(), found.group()
        if char == "#":
            line_end = text.find("\n", position)
            if line_end == -1:
                return None, brackets
            position = line_end + 1
        elif char == '"':
            if text.startswith('"""', position):
                close = text.find('"""', position + 3)
                if close == -1:
                    return Opening('"""', position), brackets
                position = close + 3
            else:
                string = _STRING.match(text, position)
                if string is None:
                    return Opening('"', position), brackets
                position = string.end()
        else:
            if char in "([{":
                brackets.append(Opening(char, position))
            elif brackets and brackets[-1].text == _OPENER_OF[char]:
                brackets.pop()
            position += 1


def describe_unclosed_string(opening: Opening, text: str) -> tuple[str, str]:
    """(message, help) for a string that is never closed, reported where it starts."""
    line, col = _line_col(text, opening.offset)
    if opening.text == '"""':
        return ("this block string is not closed",
                f'it starts here (line {line}, column {col}) and runs to the end of the file; '
                'end it with """')
    return ("this string is not closed on its line",
            'end it with " before the line ends; use """…""" for text over several lines')


KEYWORD_AS_NAME_HELP = "a keyword cannot be used as a name here; rename it"


def _keyword_for_name(error: UnexpectedInput, expected: set[str]) -> bool:
    """A keyword where a name was expected: `flow model(…)`, `type = …`."""
    from .parser import KEYWORDS

    token = getattr(error, "token", None)
    return (isinstance(error, UnexpectedToken) and "NAME" in expected and not _EXPRESSION_STARTS <= expected
            and token is not None
            and str(token) in KEYWORDS and token.type == str(token).upper())


def _character_help(char: str) -> str | None:
    if char in "'`":
        return 'strings are written in double quotes: "text"'
    if char == ";":
        return "statements end at the end of the line; no ';' is needed"
    return None


def _starts_declaration(error: UnexpectedInput) -> bool:
    """A declaration keyword at column 1 inside a declaration: the one above is unclosed."""
    from .parser import DECLARATION_KEYWORDS

    token = getattr(error, "token", None)
    from .parser import DECLARATION_START

    return (isinstance(error, UnexpectedToken) and token is not None and token.column == 1
            and str(token) in DECLARATION_KEYWORDS and token.type in (str(token).upper(), DECLARATION_START))


def _match_help(error: UnexpectedInput) -> str | None:
    """The help of the example that failed in the same parser context.

    Lark's ``match_examples`` compares whole parser stacks, so an example only
    matches an error in a file's first declaration. fmflow compares the top
    of the stack (the last few states, which say where in a declaration the
    parser is), first together with the kind of token found, then alone,
    then the top state with the token.
    """
    if not isinstance(error, UnexpectedToken):
        return None
    stack = tuple(error.state.state_stack[-_CONTEXT:])
    table = _example_contexts()
    token = error.token.type
    return table.get((stack, token)) or table.get((stack, None)) or table.get((stack[-1:], token))


_CONTEXT = 3


@lru_cache(maxsize=1)
def _example_contexts() -> dict[tuple, str]:
    from .parser import lark_parser

    table: dict[tuple, str] = {}
    for label, examples in EXAMPLES.items():
        for example in examples:
            try:
                lark_parser().parse(example)
            except UnexpectedToken as failure:
                stack = tuple(failure.state.state_stack[-_CONTEXT:])
                token = failure.token.type
                for key in ((stack, token), (stack, None), (stack[-1:], token)):
                    table.setdefault(key, label)
            except UnexpectedInput:
                continue
    return table
