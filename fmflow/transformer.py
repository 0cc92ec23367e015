"""Lark's reductions → fmflow AST, built while the parser runs.

Lark would first build a parse tree (a Tree and a Meta per rule, positions
propagated through every level) and a Transformer would then walk it; at 10k
lines that was most of the parse time. Instead each grammar rule gets one
callback (``ast_callbacks``) that the LALR parser calls on each reduction
with the rule's raw children: every token, kept or not, and what the
callbacks of its sub-rules returned. A node's span runs from its first raw
child to its last, which is what Lark's ``propagate_positions`` gives:
a parenthesised expression keeps its own span, and the brackets count in
its parent's (``_Build.outer``).

Lark's own internal transformer (``Lark(transformer=…)``) cannot do this: it
refuses ``v_args(meta=True)`` and hands callbacks the children with the
anonymous tokens (keywords, brackets) already dropped, so no exact span
could be made from them.

Diagnostics found while building (an escape, a version, a parameter order)
wait in ``_Build.pending`` and count only if the whole parse succeeds: the
parser may stop at a syntax error and parse again (see parser.py).
"""

from __future__ import annotations

import re
import textwrap
import threading
from operator import itemgetter
from typing import Any, Callable

from lark import Token

from . import ast
from .diagnostics import Diagnostics
from .source import SourceFile, Span, new_span

_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "0": "\0", "{": "{"}
_ESCAPE_RE = re.compile(r"\\(u\{([0-9A-Fa-f]{1,6})\}|.)", re.S)

SURROGATE_HELP = "U+D800 to U+DFFF only exist inside UTF-16; write the character itself, e.g. \\u{1F600}"

DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
RATE_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0,
              "d": 86400.0, "day": 86400.0}


class _Part:
    """What a rule gives that is not a node (a block's entries, a flow's body,
    a version number), with the raw children at its two ends: the spans of
    the nodes around it run to them."""

    __slots__ = ("value", "first", "last")

    def __init__(self, value: Any, first: Any, last: Any) -> None:
        self.value = value
        self.first = first
        self.last = last


class _Build(threading.local):
    """The parse under way in this thread: its file, what it found, and the
    outer spans of parenthesised expressions (keyed by node id: ``(a) + b``
    starts at the bracket, while ``a`` keeps its own span)."""

    def __init__(self) -> None:
        self.begin(SourceFile("<string>", ""))

    def begin(self, source: SourceFile) -> None:
        self.source = source
        self.path = source.path
        self.outer: dict[int, Span] = {}
        self.pending: list[tuple] = []


_build = _Build()


def begin_build(source: SourceFile) -> None:
    """Start a parse of ``source`` (again, after a syntax error): nothing found so far counts."""
    _build.begin(source)


def build_module(items: list, source: SourceFile, diagnostics: Diagnostics,
                 comments: list[ast.Comment]) -> ast.Module:
    """The Module of a successful parse (``items``: what the ``start`` rule gave)."""
    for pending in _build.pending:
        diagnostics.add(*pending)
    _build.begin(source)  # let go of the parse's bookkeeping
    imports = [i for i in items if isinstance(i, ast.Import)]
    decls = [i for i in items if isinstance(i, ast.Decl)]
    return ast.Module(source.path, imports, decls, comments, span=source.span(0, len(source.text)))


def _report(code: str, message: str, span: Span, help_text: str) -> None:
    _build.pending.append((code, message, span, help_text))


# ------------------------------------------------------------------ spans

def _between(first: Any, last: Any) -> Span:
    """From the start of raw child ``first`` to the end of raw child ``last``."""
    while not isinstance(first, (Token, ast.Node)):
        first = first.first if type(first) is _Part else first[0]  # a _Part or a repetition's list
    while not isinstance(last, (Token, ast.Node)):
        last = last.last if type(last) is _Part else last[-1]
    build = _build
    outer = build.outer
    if isinstance(first, Token):
        start, line, col = first.start_pos, first.line, first.column
    else:
        span = (outer and outer.get(id(first))) or first.span
        start, line, col = span.start, span.line, span.col
    if isinstance(last, Token):
        end, end_line, end_col = last.end_pos, last.end_line, last.end_column
    else:
        span = (outer and outer.get(id(last))) or last.span
        end, end_line, end_col = span.end, span.end_line, span.end_col
    return new_span(build.path, start, end, line, col, end_line, end_col)


def _tok_span(token: Token) -> Span:
    return new_span(_build.path, token.start_pos, token.end_pos, token.line, token.column,
                    token.end_line, token.end_column)


def _whole(s: list) -> Span:
    return _between(s[0], s[-1])


# -------------------------------------------------------------- top level

def _start(s, items):
    return list(items)


def _import_decl(s, items):
    return ast.Import(_string_value(items[0]), span=_whole(s))


def _block_decl(cls):
    def build(s, items):
        name, block = items[0], items[-1]
        return cls(name=str(name), name_span=_tok_span(name), entries=block.value, span=_whole(s))
    return build


def _prompt_decl(s, items):
    name = items[0]
    version = items[1].value if len(items) == 5 else None
    params, returns, entries = items[-3], items[-2], items[-1]
    return ast.PromptDecl(name=str(name), name_span=_tok_span(name), version=version,
                          params=params.value, returns=returns, entries=entries.value, span=_whole(s))


def _version(s, items):
    value = int(items[0])
    if value < 1:
        _report("E001", f"prompt version must be a positive integer, got {value}",
                _tok_span(items[0]), "versions count from 1: write NAME@1")
    return _Part(value, s[0], s[-1])


def _agent_decl(s, items):
    name, params, returns, entries = items
    return ast.AgentDecl(name=str(name), name_span=_tok_span(name), params=params.value,
                         returns=returns, entries=entries.value, span=_whole(s))


def _tool_decl(cls):
    def build(s, items):
        name, params, returns, impl = items
        return cls(name=str(name), name_span=_tok_span(name), params=params.value, returns=returns,
                   impl=impl, span=_whole(s))
    return build


def _flow_decl(s, items):
    name, params, returns, body = items
    statements, end_span = body.value
    return ast.FlowDecl(name=str(name), name_span=_tok_span(name), params=params.value,
                        returns=returns, body=statements, end_span=end_span, span=_whole(s))


def _type_decl(s, items):
    name, *fields = items
    return ast.TypeDecl(name=str(name), name_span=_tok_span(name), fields=fields, span=_whole(s))


def _field(s, items):
    key, type_ref = items
    return ast.Field(str(key), type_ref, span=_whole(s))


def _enum_decl(s, items):
    name, *members = items
    return ast.EnumDecl(name=str(name), name_span=_tok_span(name), members=members, span=_whole(s))


def _enum_member(s, items):
    return ast.EnumMember(str(items[0]), span=_whole(s))


def _params(s, items):
    params = list(items)
    defaulted = None
    for param in params:
        if param.default is not None:
            defaulted = defaulted or param
        elif defaulted is not None:  # Python's rule too: a caller could not leave the earlier one out
            _report("E001", f"parameter '{param.name}' needs a default: it follows '{defaulted.name}', which has one",
                    param.span.head(len(param.name)),
                    f"give '{param.name}' a default too, or move it before '{defaulted.name}'")
    return _Part(params, s[0], s[-1])


def _param(s, items):
    default = items[2] if len(items) > 2 else None
    return ast.Param(str(items[0]), items[1], default, span=_whole(s))


def _type_ref(s, items):  # NAME, then maybe a type_ref (in brackets), then maybe `?`
    arg = items[1] if len(items) > 1 and isinstance(items[1], ast.TypeRef) else None
    optional = isinstance(items[-1], Token) and items[-1].type == "OPTIONAL"
    return ast.TypeRef(str(items[0]), arg, optional, span=_whole(s))


def _listed(s, items):
    """A bracketed list of parts (a block's entries, call arguments)."""
    return _Part(list(items), s[0], s[-1])


def _entry(s, items):
    key, value = items
    return ast.Entry(str(key), value, key_span=_tok_span(key), span=_whole(s))


# ---------------------------------------------------------- statements

def _body(s, items):
    return _Part((list(items), _tok_span(s[-1])), s[0], s[-1])  # and the span of its `}`


def _assign_stmt(s, items):
    name, value = items
    return ast.Assign(str(name), value, name_span=_tok_span(name), span=_whole(s))


def _return_stmt(s, items):
    return ast.Return(items[0], span=_whole(s))


def _if_stmt(s, items):
    condition, body = items[0], items[1]
    statements, end = body.value
    # The first arm runs from `if` to its own `}` (the If spans every arm).
    branches = [ast.Branch(condition, statements, end_span=end, span=_between(s[0], body))]
    orelse = None
    for clause in items[2:]:
        if isinstance(clause, ast.Branch):
            branches.append(clause)
        else:
            orelse = clause.value
    return ast.If(branches, orelse, span=_whole(s))


def _elif_clause(s, items):
    condition, body = items
    statements, end = body.value
    return ast.Branch(condition, statements, end_span=end, span=_whole(s))


def _else_clause(s, items):
    return _Part(items[0].value[0], s[0], s[-1])


# --------------------------------------------------------- expressions

def _conditional(s, items):
    then, condition, otherwise = items
    return ast.Conditional(then, condition, otherwise, span=_whole(s))


def _binary_op(op: str):
    def build(s, items):
        return ast.Binary(op, items[0], items[1], span=_whole(s))
    return build


def _binary(s, items):  # the operator is a token: `a + b`, `a <= b`
    left, op, right = items
    return ast.Binary(str(op), left, right, span=_whole(s))


def _not_op(s, items):
    return ast.Unary("not", items[0], span=_whole(s))


def _neg(s, items):
    return ast.Unary("-", items[1], span=_whole(s))


def _pipe(s, items):
    value, name = items[0], items[1]
    args = items[2].value if len(items) > 2 else []
    return ast.Pipe(value, str(name), args, filter_span=_tok_span(name), span=_whole(s))


def _call(s, items):
    return ast.Call(items[0], items[1].value, span=_whole(s))


def _arg(s, items):
    return ast.Arg(None, items[0], span=_whole(s))


def _named_arg(s, items):
    name, value = items
    return ast.Arg(str(name), value, span=_whole(s))


def _attribute(s, items):
    value, key = items
    return ast.Attribute(value, str(key), attr_span=_tok_span(key), span=_whole(s))


def _index(s, items):
    return ast.Index(items[0], items[1], span=_whole(s))


def _name(s, items):
    version = items[1].value if len(items) > 1 else None
    return ast.Name(str(items[0]), version, span=_whole(s))


def _string(s, items):
    return ast.Literal("str", _string_value(items[0]), raw=str(items[0]), span=_whole(s))


def _block_string(s, items):
    token = items[0]
    value, first_line, indent = dedent_block(str(token)[3:-3], token.line)
    return ast.BlockString(value, raw=str(token), first_line=first_line, indent=indent, span=_whole(s))


def _int(s, items):
    return ast.Literal("int", int(items[0]), raw=str(items[0]), span=_whole(s))


def _float(s, items):
    return ast.Literal("float", float(items[0]), raw=str(items[0]), span=_whole(s))


def _duration(s, items):
    text = str(items[0])
    number, unit = re.fullmatch(r"([\d.]+)(ms|s|m|h)", text).groups()
    return ast.Literal("duration", float(number) * DURATION_UNITS[unit], raw=text, span=_whole(s))


def _rate(s, items):
    text = str(items[0])
    count, unit = text.split("/")
    return ast.Literal("rate", (int(count), RATE_UNITS[unit]), raw=text, span=_whole(s))


def _constant(kind: str, value: object, raw: str):
    def build(s, items):
        return ast.Literal(kind, value, raw=raw, span=_whole(s))
    return build


def _list(s, items):
    return ast.ListExpr(list(items), span=_whole(s))


def _comprehension(s, items):
    element, var, iterable = items[0], items[1], items[2]
    condition = items[3] if len(items) > 3 else None
    return ast.Comprehension(element, str(var), iterable, condition, var_span=_tok_span(var), span=_whole(s))


def _dict(s, items):
    return ast.DictExpr(list(items), span=_whole(s))


def _dict_entry(s, items):
    key, value = items
    quoted = key.type == "STRING"
    text = _string_value(key) if quoted else str(key)
    return ast.DictEntry(text, value, quoted=quoted, span=_whole(s))


def _parenthesised(s):
    """``( expr )``: the expression itself; its parent's span takes in the brackets."""
    node = s[1]
    _build.outer[id(node)] = _whole(s)
    return node


_HANDLERS: dict[str, Callable[[list, list], Any]] = {
    "start": _start, "import_decl": _import_decl,
    "model_decl": _block_decl(ast.ModelDecl), "retriever_decl": _block_decl(ast.RetrieverDecl),
    "test_decl": _block_decl(ast.TestDecl), "eval_decl": _block_decl(ast.EvalDecl),
    "pipeline_decl": _block_decl(ast.PipelineDecl), "prompt_decl": _prompt_decl, "version": _version,
    "agent_decl": _agent_decl, "tool_decl": _tool_decl(ast.ToolDecl), "filter_decl": _tool_decl(ast.FilterDecl),
    "flow_decl": _flow_decl, "type_decl": _type_decl, "field": _field, "enum_decl": _enum_decl,
    "enum_member": _enum_member, "params": _params, "param": _param, "type_ref": _type_ref,
    "block": _listed, "entry": _entry, "body": _body, "assign_stmt": _assign_stmt,
    "return_stmt": _return_stmt, "if_stmt": _if_stmt, "elif_clause": _elif_clause,
    "else_clause": _else_clause, "conditional": _conditional, "or_op": _binary_op("or"),
    "and_op": _binary_op("and"), "not_op": _not_op, "compare": _binary, "in_op": _binary_op("in"),
    "not_in_op": _binary_op("not in"), "binary": _binary, "neg": _neg, "pipe": _pipe, "call": _call,
    "call_args": _listed, "arg": _arg, "named_arg": _named_arg, "attribute": _attribute, "index": _index,
    "name": _name, "string": _string, "block_string": _block_string, "int": _int, "float": _float,
    "duration": _duration, "rate": _rate, "true": _constant("bool", True, "true"),
    "false": _constant("bool", False, "false"), "null": _constant("null", None, "null"),
    "list": _list, "comprehension": _comprehension, "dict": _dict, "dict_entry": _dict_entry,
}


# ------------------------------------------------------------ callbacks

PASS_THROUGH = _first = itemgetter(0)  # a rule whose value is its one child's


def _repeat_first(s):
    return [s[-1]]


def _repeat_more(s):
    s[0].append(s[-1])
    return s[0]


def _nothing(s):
    return None


def ast_callbacks(rules: list) -> dict:
    """One callback per grammar rule, for Lark's LALR parser (``callbacks[rule](raw_children)``).

    A grammar rule this module does not know is an error here, when the
    parser is made, rather than a wrong tree later.
    """
    callbacks = {}
    for rule in rules:
        name = rule.alias or rule.origin.name
        if name.startswith("__"):  # `x*` and `(sep x)*`: a list the parent splices in
            recursive = rule.expansion[0].name == rule.origin.name
            callbacks[rule] = _repeat_more if recursive else _repeat_first
        elif name == "_sep":
            callbacks[rule] = _nothing
        elif name in ("_decl", "_stmt", "key") or (rule.options.expand1 and rule.alias is None
                                                    and len(rule.expansion) == 1):
            callbacks[rule] = _first  # one child, passed up as it is (`key` keeps its token)
        elif rule.options.expand1 and rule.alias is None and len(rule.expansion) == 3:
            callbacks[rule] = _parenthesised
        elif name in _HANDLERS:
            callbacks[rule] = _with_items(_HANDLERS[name], rule)
        else:
            raise ValueError(f"the grammar's rule '{name}' has no AST builder in fmflow/transformer.py")
    return callbacks


def _with_items(handler: Callable[[list, list], Any], rule) -> Callable[[list], Any]:
    """``handler(raw, items)``: items are what Lark's tree would hold: no anonymous
    tokens or separators, repetitions spliced in."""
    plan = []
    for index, symbol in enumerate(rule.expansion):
        if symbol.is_term:
            if rule.options.keep_all_tokens or not symbol.filter_out:
                plan.append((index, False))
        elif symbol.name != "_sep":
            plan.append((index, symbol.name.startswith("__")))
    if any(splice for _, splice in plan):
        def callback(s):
            items = []
            for index, splice in plan:
                if splice:
                    items.extend(s[index])
                else:
                    items.append(s[index])
            return handler(s, items)
        return callback
    indexes = tuple(index for index, _ in plan)
    if indexes == tuple(range(len(rule.expansion))):
        return lambda s: handler(s, s)
    return lambda s: handler(s, [s[i] for i in indexes])


# ------------------------------------------------------------ strings

def _string_value(token: Token) -> str:
    body = str(token)[1:-1]
    if "\\" not in body:
        return body

    def replace(match: re.Match) -> str:
        start = token.start_pos + 1 + match.start()
        span = _build.source.span(start, start + len(match.group(0)))
        if match.group(2) is not None:
            code = int(match.group(2), 16)
            if code > 0x10FFFF:
                _report("E001", f"'{match.group(0)}' is beyond the last Unicode code point",
                        span, "code points go up to \\u{10FFFF}")
            elif 0xD800 <= code <= 0xDFFF:  # such a string could never be written out or sent
                _report("E001", f"'{match.group(0)}' is a surrogate code point, not a character",
                        span, SURROGATE_HELP)
            else:
                return chr(code)
            return match.group(0)
        elif match.group(1) in _ESCAPES:
            return _ESCAPES[match.group(1)]
        _report("E001", f"unknown escape sequence '{match.group(0)}' in a string", span,
                'use \\" \\\\ \\n \\t or \\u{XXXX}')
        return match.group(0)

    return _ESCAPE_RE.sub(replace, body)


def dedent_block(content: str, line: int) -> tuple[str, int, int]:
    """Dedent a block string's content as LANGUAGE.md §1 says.

    Returns the value, the file line its first line is on, and the number of
    columns removed from each line (for mapping template positions back).
    """
    first_line = line
    if content.startswith("\r\n"):
        content, first_line = content[2:], line + 1
    elif content.startswith("\n"):
        content, first_line = content[1:], line + 1
    lines = content.split("\n")
    if len(lines) > 1 and not lines[-1].strip():
        lines[-1] = ""  # the closing quotes' own line adds no text
    dedented = textwrap.dedent("\n".join(lines))
    indent = 0
    for original in lines:
        if original.strip():
            indent = len(original) - len(original.lstrip())
            break
    if first_line == line:  # text starts right after the quotes: its column differs
        indent = 0
    return dedented, first_line, indent
