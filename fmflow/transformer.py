"""Lark tree → fmflow AST. Every node gets the Span of its Lark meta."""

from __future__ import annotations

import re
import textwrap

from lark import Token, Tree, v_args
from lark.visitors import Transformer_NonRecursive

from . import ast
from .diagnostics import Diagnostics
from .source import SourceFile

_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "0": "\0", "{": "{"}
_ESCAPE_RE = re.compile(r"\\(u\{([0-9A-Fa-f]{1,6})\}|.)", re.S)

SURROGATE_HELP = "U+D800 to U+DFFF only exist inside UTF-16; write the character itself, e.g. \\u{1F600}"

DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
RATE_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0,
              "d": 86400.0, "day": 86400.0}


def build_module(tree: Tree, source: SourceFile, diagnostics: Diagnostics,
                 comments: list[ast.Comment]) -> ast.Module:
    items = _ASTBuilder(source, diagnostics).transform(tree)
    imports = [i for i in items if isinstance(i, ast.Import)]
    decls = [i for i in items if isinstance(i, ast.Decl)]
    return ast.Module(source.path, imports, decls, comments, span=source.span(0, len(source.text)))


def _children(items: list) -> list:
    return [c for c in items if c is not None]


@v_args(meta=True)
class _ASTBuilder(Transformer_NonRecursive):
    def __init__(self, source: SourceFile, diagnostics: Diagnostics) -> None:
        super().__init__()
        self.source = source
        self.diagnostics = diagnostics

    # ------------------------------------------------------------- helpers
    def _span(self, meta):
        if getattr(meta, "empty", True):
            return self.source.span(0, 0)
        return self.source.span(meta.start_pos, meta.end_pos)

    def _tok_span(self, token: Token):
        return self.source.span(token.start_pos, token.end_pos)

    # ---------------------------------------------------------- top level
    def start(self, meta, items):
        return list(items)

    def import_decl(self, meta, items):
        return ast.Import(self._string_value(items[0]), span=self._span(meta))

    def _block_decl(self, cls, meta, items, **extra):
        name, block = items[0], items[-1]
        return cls(name=str(name), name_span=self._tok_span(name), entries=block, span=self._span(meta), **extra)

    def model_decl(self, meta, items):
        return self._block_decl(ast.ModelDecl, meta, items)

    def retriever_decl(self, meta, items):
        return self._block_decl(ast.RetrieverDecl, meta, items)

    def test_decl(self, meta, items):
        return self._block_decl(ast.TestDecl, meta, items)

    def eval_decl(self, meta, items):
        return self._block_decl(ast.EvalDecl, meta, items)

    def pipeline_decl(self, meta, items):
        return self._block_decl(ast.PipelineDecl, meta, items)

    def prompt_decl(self, meta, items):
        name = items[0]
        version = items[1] if isinstance(items[1], int) else None
        params, returns, entries = items[-3], items[-2], items[-1]
        return ast.PromptDecl(name=str(name), name_span=self._tok_span(name), version=version,
                              params=params, returns=returns, entries=entries, span=self._span(meta))

    def version(self, meta, items):
        value = int(items[0])
        if value < 1:
            self.diagnostics.add("E001", f"prompt version must be a positive integer, got {value}",
                                 self._tok_span(items[0]), "versions count from 1: write NAME@1")
        return value

    def agent_decl(self, meta, items):
        name, params, returns, entries = items
        return ast.AgentDecl(name=str(name), name_span=self._tok_span(name), params=params,
                             returns=returns, entries=entries, span=self._span(meta))

    def tool_decl(self, meta, items, cls=ast.ToolDecl):
        name, params, returns, impl = items
        return cls(name=str(name), name_span=self._tok_span(name), params=params, returns=returns,
                   impl=impl, span=self._span(meta))

    def filter_decl(self, meta, items):
        return self.tool_decl(meta, items, cls=ast.FilterDecl)

    def flow_decl(self, meta, items):
        name, params, returns, (body, end_span) = items
        return ast.FlowDecl(name=str(name), name_span=self._tok_span(name), params=params,
                            returns=returns, body=body, end_span=end_span, span=self._span(meta))

    def type_decl(self, meta, items):
        name, *fields = items
        return ast.TypeDecl(name=str(name), name_span=self._tok_span(name), fields=_children(fields),
                            span=self._span(meta))

    def field(self, meta, items):
        key, type_ref = items
        return ast.Field(str(key), type_ref, span=self._span(meta))

    def enum_decl(self, meta, items):
        name, *members = items
        return ast.EnumDecl(name=str(name), name_span=self._tok_span(name), members=_children(members),
                            span=self._span(meta))

    def enum_member(self, meta, items):
        return ast.EnumMember(str(items[0]), span=self._span(meta))

    def params(self, meta, items):
        params = _children(items)
        defaulted = None
        for param in params:
            if param.default is not None:
                defaulted = defaulted or param
            elif defaulted is not None:  # Python's rule too: a caller could not leave the earlier one out
                self.diagnostics.add(
                    "E001", f"parameter '{param.name}' needs a default: it follows '{defaulted.name}', which has one",
                    param.span.head(len(param.name)),
                    f"give '{param.name}' a default too, or move it before '{defaulted.name}'")
        return params

    def param(self, meta, items):
        name, type_ref = items[0], items[1]
        default = items[2] if len(items) > 2 else None
        return ast.Param(str(name), type_ref, default, span=self._span(meta))

    def type_ref(self, meta, items):
        name = items[0]
        arg = next((i for i in items[1:] if isinstance(i, ast.TypeRef)), None)
        optional = any(isinstance(i, Token) and i.type == "OPTIONAL" for i in items[1:])
        return ast.TypeRef(str(name), arg, optional, span=self._span(meta))

    def block(self, meta, items):
        return _children(items)

    def entry(self, meta, items):
        key, value = items
        return ast.Entry(str(key), value, key_span=self._tok_span(key), span=self._span(meta))

    def key(self, meta, items):
        return items[0]  # keep the Token: callers need its position

    # ---------------------------------------------------------- statements
    def body(self, meta, items):
        end = self.source.span(max(meta.end_pos - 1, 0), meta.end_pos) if not meta.empty else None
        return _children(items), end

    def assign_stmt(self, meta, items):
        name, value = items
        return ast.Assign(str(name), value, name_span=self._tok_span(name), span=self._span(meta))

    def return_stmt(self, meta, items):
        return ast.Return(items[0], span=self._span(meta))

    def if_stmt(self, meta, items):
        condition, (body, end) = items[0], items[1]
        # The first arm runs from `if` to its own `}` (the If spans every arm).
        first_end = end.end if end is not None else meta.end_pos
        branches = [ast.Branch(condition, body, end_span=end, span=self.source.span(meta.start_pos, first_end))]
        orelse = None
        for clause in items[2:]:
            if isinstance(clause, ast.Branch):
                branches.append(clause)
            else:
                orelse = clause
        return ast.If(branches, orelse, span=self._span(meta))

    def elif_clause(self, meta, items):
        condition, (body, end) = items
        return ast.Branch(condition, body, end_span=end, span=self._span(meta))

    def else_clause(self, meta, items):
        body, _end = items[0]
        return body

    # --------------------------------------------------------- expressions
    def conditional(self, meta, items):
        then, condition, otherwise = items
        return ast.Conditional(then, condition, otherwise, span=self._span(meta))

    def or_op(self, meta, items):
        return ast.Binary("or", items[0], items[1], span=self._span(meta))

    def and_op(self, meta, items):
        return ast.Binary("and", items[0], items[1], span=self._span(meta))

    def not_op(self, meta, items):
        return ast.Unary("not", items[0], span=self._span(meta))

    def compare(self, meta, items):
        left, op, right = items
        return ast.Binary(str(op), left, right, span=self._span(meta))

    def in_op(self, meta, items):
        return ast.Binary("in", items[0], items[1], span=self._span(meta))

    def not_in_op(self, meta, items):
        return ast.Binary("not in", items[0], items[1], span=self._span(meta))

    def binary(self, meta, items):
        left, op, right = items
        return ast.Binary(str(op), left, right, span=self._span(meta))

    def neg(self, meta, items):
        return ast.Unary("-", items[1], span=self._span(meta))

    def pipe(self, meta, items):
        value, name = items[0], items[1]
        args = items[2] if len(items) > 2 else []
        return ast.Pipe(value, str(name), args, filter_span=self._tok_span(name), span=self._span(meta))

    def call(self, meta, items):
        func, args = items
        return ast.Call(func, args, span=self._span(meta))

    def call_args(self, meta, items):
        return _children(items)

    def arg(self, meta, items):
        return ast.Arg(None, items[0], span=self._span(meta))

    def named_arg(self, meta, items):
        name, value = items
        return ast.Arg(str(name), value, span=self._span(meta))

    def attribute(self, meta, items):
        value, key = items
        return ast.Attribute(value, str(key), attr_span=self._tok_span(key), span=self._span(meta))

    def index(self, meta, items):
        return ast.Index(items[0], items[1], span=self._span(meta))

    def name(self, meta, items):
        version = items[1] if len(items) > 1 else None
        return ast.Name(str(items[0]), version, span=self._span(meta))

    def string(self, meta, items):
        return ast.Literal("str", self._string_value(items[0]), raw=str(items[0]), span=self._span(meta))

    def block_string(self, meta, items):
        token = items[0]
        value, first_line, indent = dedent_block(str(token)[3:-3], token.line)
        return ast.BlockString(value, raw=str(token), first_line=first_line, indent=indent,
                               span=self._span(meta))

    def int(self, meta, items):
        return ast.Literal("int", int(items[0]), raw=str(items[0]), span=self._span(meta))

    def float(self, meta, items):
        return ast.Literal("float", float(items[0]), raw=str(items[0]), span=self._span(meta))

    def duration(self, meta, items):
        text = str(items[0])
        number, unit = re.fullmatch(r"([\d.]+)(ms|s|m|h)", text).groups()
        return ast.Literal("duration", float(number) * DURATION_UNITS[unit], raw=text, span=self._span(meta))

    def rate(self, meta, items):
        text = str(items[0])
        count, unit = text.split("/")
        return ast.Literal("rate", (int(count), RATE_UNITS[unit]), raw=text, span=self._span(meta))

    def true(self, meta, items):
        return ast.Literal("bool", True, raw="true", span=self._span(meta))

    def false(self, meta, items):
        return ast.Literal("bool", False, raw="false", span=self._span(meta))

    def null(self, meta, items):
        return ast.Literal("null", None, raw="null", span=self._span(meta))

    def list(self, meta, items):
        return ast.ListExpr(_children(items), span=self._span(meta))

    def comprehension(self, meta, items):
        element, var, iterable = items[0], items[1], items[2]
        condition = items[3] if len(items) > 3 else None
        return ast.Comprehension(element, str(var), iterable, condition, var_span=self._tok_span(var),
                                 span=self._span(meta))

    def dict(self, meta, items):
        return ast.DictExpr(_children(items), span=self._span(meta))

    def dict_entry(self, meta, items):
        key, value = items
        quoted = key.type == "STRING"
        text = self._string_value(key) if quoted else str(key)
        return ast.DictEntry(text, value, quoted=quoted, span=self._span(meta))

    # ------------------------------------------------------------ strings
    def _string_value(self, token: Token) -> str:
        body = str(token)[1:-1]

        def replace(match: re.Match) -> str:
            start = token.start_pos + 1 + match.start()
            span = self.source.span(start, start + len(match.group(0)))
            if match.group(2) is not None:
                code = int(match.group(2), 16)
                if code > 0x10FFFF:
                    self.diagnostics.add("E001", f"'{match.group(0)}' is beyond the last Unicode code point",
                                         span, "code points go up to \\u{10FFFF}")
                elif 0xD800 <= code <= 0xDFFF:  # such a string could never be written out or sent
                    self.diagnostics.add("E001", f"'{match.group(0)}' is a surrogate code point, not a character",
                                         span, SURROGATE_HELP)
                else:
                    return chr(code)
                return match.group(0)
            elif match.group(1) in _ESCAPES:
                return _ESCAPES[match.group(1)]
            self.diagnostics.add(
                "E001", f"unknown escape sequence '{match.group(0)}' in a string", span,
                'use \\" \\\\ \\n \\t or \\u{XXXX}',
            )
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
