"""AST → canonical ``.fmflow`` text: the engine of ``fmflow fmt``.

The layout is a pure function of the AST, so formatting twice changes
nothing; only comments and blank lines are taken from the source, through
the node spans. Expressions become small documents (text, sequences and
bracketed groups); a line that does not fit in ``WIDTH`` columns has its
outermost group broken one item per line, and so on inwards.

Comments: an own-line comment is printed before the next node that starts
after it, at that node's indentation. A trailing comment stays on the output
line of the node that ends on its source line (entry, statement, header,
closing brace). A comment inside a multi-line expression moves to just
before the entry or statement that holds it. No comment is ever dropped.
"""

from __future__ import annotations

import bisect
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Union

from . import ast
from .doc_comments import is_doc_comment_text

WIDTH = 88
INDENT = 2
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t"}
# What a plain string literal cannot hold as is: quotes, backslashes, the control
# characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F) and the line and
# paragraph separators.
_TO_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f-\x9f\u2028\u2029]')


def format_text(text: str, path: str = "<string>") -> str | None:
    """Canonical text of ``text``, or None when it has syntax errors (E001)."""
    from .parser import parse_text

    module, diagnostics = parse_text(text, path)
    if any(d.code == "E001" for d in diagnostics):
        return None
    return format_module(module)


def format_module(module: ast.Module) -> str:
    """Canonical text of a parsed module; ends with exactly one newline."""
    from .parser import collector_paused

    with collector_paused():  # like parsing: many small objects, all kept, no garbage to find
        out = _Emitter(module.comments)
        _emit_module(out, module)
    lines = out.lines
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


# ---------------------------------------------------------------- documents

@dataclass
class Group:
    """Bracketed items: flat on one line, or broken one item per line."""

    open: str
    items: list["Doc"]
    close: str
    pad: bool = False  # flat form has spaces inside the brackets: ``{ a: 1 }``
    joiner: str = ", "  # between items in the flat form
    comma: bool = True  # broken form ends every item with a comma
    empty: str = field(default="")
    bare: bool = False  # flat form has no brackets (pipe chains)
    hard: bool = False  # always broken (it holds Documented items)

    def flat(self) -> str:
        if not self.items:
            return self.empty or self.open + self.close
        inner = self.joiner.join(flat(item) for item in self.items)
        if self.bare:
            return inner
        space = " " if self.pad else ""
        return f"{self.open}{space}{inner}{space}{self.close}"


@dataclass
class Documented:
    """A group item printed below its ``##`` lines: its group is always broken."""

    lines: list[str]
    item: "Doc"


Doc = Union[str, list, Group, Documented]


def flat(doc: Doc) -> str:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, Group):
        return doc.flat()
    if isinstance(doc, Documented):
        return flat(doc.item)
    return "".join(flat(part) for part in doc)


def _fits(line: str) -> bool:
    # Lines of a block string are verbatim and never counted: only the first
    # and the last segment are (found without splitting a long text).
    first = line.find("\n")
    if first < 0:
        return len(line) <= WIDTH
    return first <= WIDTH and len(line) - line.rfind("\n") - 1 <= WIDTH


def _outer_groups(doc: Doc, start: int = 0) -> list[tuple[Group, int, int]]:
    """The outermost non-empty groups of ``doc``, each with its start and end in ``flat(doc)``."""
    found: list[tuple[Group, int, int]] = []
    stack: list[Doc] = [doc]
    position = start
    while stack:
        part = stack.pop()
        if isinstance(part, list):
            stack.extend(reversed(part))
            continue
        width = len(flat(part))
        if isinstance(part, Group) and part.items:
            found.append((part, position, position + width))
        position += width
    return found


def layout(doc: Doc, indent: int, memo: dict | None = None) -> list[str]:
    """Lines of ``doc`` at ``indent``, breaking groups only where needed.

    ``memo`` keeps the layout of group items already tried, so that trying
    each outer group in turn stays cheap on deeply nested expressions.
    """
    memo = {} if memo is None else memo
    text = " " * indent + flat(doc)
    # A group holding documented items (parameters with `##` lines) is always broken;
    # only a signature has one, at its top level.
    forced = {id(p) for p in doc if isinstance(p, Group) and p.hard} if isinstance(doc, list) else set()
    if _fits(text) and not forced:
        return [text]
    groups = _outer_groups(doc, indent)
    if not groups:
        return [text]
    if forced:  # the documented group alone broken, when that is enough
        lines = _render(doc, indent, forced, memo)
        if all(_fits(line) for line in lines):
            return lines
    # Break the widest group whose first and last lines then fit (the last on ties).
    # Without a forced group those lines are known from the flat text, so only the
    # group chosen is rendered: a line of a thousand calls is not rendered a thousand times.
    for group, start, end in sorted(reversed(groups), key=lambda g: g[1] - g[2]):
        if not forced and not (_fits(text[:start] + group.open) and _fits(" " * indent + group.close + text[end:])):
            continue
        lines = _render(doc, indent, {id(group)} | forced, memo)
        if _fits(lines[0]) and _fits(lines[-1]):
            return lines
    return _render(doc, indent, {id(g) for g, _start, _end in groups}, memo)


def _render(doc: Doc, indent: int, broken: set[int], memo: dict) -> list[str]:
    lines: list[str] = []
    line = [" " * indent]  # the pieces of the line being built, joined once it ends

    def emit(part: Doc) -> None:
        if isinstance(part, str):
            line.append(part)
        elif isinstance(part, list):
            for item in part:
                emit(item)
        elif id(part) in broken:
            line.append(part.open)
            lines.append("".join(line))
            for item in part.items:
                if isinstance(item, Documented):
                    lines.extend(" " * (indent + INDENT) + text for text in item.lines)
                    item = item.item
                key = (id(item), part.comma, indent)
                if key not in memo:
                    memo[key] = layout([item, ","] if part.comma else item, indent + INDENT, memo)
                lines.extend(memo[key])
            line[:] = [" " * indent, part.close]
        else:
            line.append(part.flat())

    emit(doc)
    lines.append("".join(line))
    return lines


# -------------------------------------------------------------- expressions

# Binding strength, loosest first (LANGUAGE.md §4).
COND, OR, AND, NOT, COMPARE, PIPE, SUM, PRODUCT, NEG, POSTFIX, ATOM = range(1, 12)
_BINARY_PREC = {
    "or": OR, "and": AND, "+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT, "%": PRODUCT,
    "==": COMPARE, "!=": COMPARE, "<": COMPARE, "<=": COMPARE, ">": COMPARE, ">=": COMPARE,
    "in": COMPARE, "not in": COMPARE,
}
# Minimum strength of the (left, right) operands; comparisons do not chain.
_OPERANDS = {OR: (OR, AND), AND: (AND, NOT), COMPARE: (PIPE, PIPE), SUM: (SUM, PRODUCT),
             PRODUCT: (PRODUCT, NEG)}


def precedence(expr: ast.Node) -> int:
    if isinstance(expr, ast.Conditional):
        return COND
    if isinstance(expr, ast.Binary):
        return _BINARY_PREC[expr.op]
    if isinstance(expr, ast.Unary):
        return NOT if expr.op == "not" else NEG
    if isinstance(expr, ast.Pipe):
        return PIPE
    if isinstance(expr, (ast.Call, ast.Attribute, ast.Index)):
        return POSTFIX
    return ATOM


def expr_doc(expr: ast.Node, minimum: int = COND) -> Doc:
    """The document of ``expr``, parenthesised if it binds looser than ``minimum``."""
    doc = _EXPR_DOCS[type(expr)](expr)
    return ["(", doc, ")"] if precedence(expr) < minimum else doc


def quote(value: str) -> str:
    """A plain string literal with canonical escapes (one pass of a pattern: a 5 MB literal is not walked in Python)."""
    return '"' + _TO_ESCAPE.sub(_escape, value) + '"'


def _escape(match: re.Match) -> str:
    ch = match.group()
    return _ESCAPES.get(ch) or "\\u{%02X}" % ord(ch)


def _literal(node: ast.Literal) -> Doc:
    if node.kind == "str":
        return quote(str(node.value))
    if node.raw:
        return node.raw
    if node.kind == "bool":
        return "true" if node.value else "false"
    return "null" if node.value is None else str(node.value)


def _block_string(node: ast.BlockString) -> Doc:
    return node.raw or f'"""{node.value}"""'


def _name(node: ast.Name) -> Doc:
    return node.id if node.version is None else f"{node.id}@{node.version}"


def _args(args: list[ast.Arg]) -> Group:
    return Group("(", [_arg(a) for a in args], ")")


def _arg(arg: ast.Arg) -> Doc:
    value = expr_doc(arg.value)
    return value if arg.name is None else [arg.name, ": ", value]


def dict_key(entry: ast.DictEntry) -> str:
    if entry.quoted or not _IDENTIFIER.match(entry.key):
        return quote(entry.key)
    return entry.key


def _dict(node: ast.DictExpr) -> Doc:
    items = [[dict_key(e), ": ", expr_doc(e.value)] for e in node.entries]
    # Inside braces a newline separates entries, so a broken dict needs no commas
    # (the style of LANGUAGE.md's `mock:` blocks).
    return Group("{", items, "}", pad=True, empty="{}", comma=False)


def _comprehension(node: ast.Comprehension) -> Doc:
    items: list[Doc] = [expr_doc(node.element), ["for ", node.var, " in ", expr_doc(node.iterable, OR)]]
    if node.condition is not None:
        items.append(["if ", expr_doc(node.condition, OR)])
    return Group("[", items, "]", joiner=" ", comma=False)


def _pipe(node: ast.Pipe) -> Doc:
    """``x | f | g(1)``; when too long, one stage per line inside parentheses."""
    stages: list[Doc] = []
    while isinstance(node, ast.Pipe):
        stages.append(["| ", node.filter, _args(node.args)] if node.args else "| " + node.filter)
        node = node.value
    stages.append(expr_doc(node, PIPE))
    return Group("(", stages[::-1], ")", joiner=" ", comma=False, bare=True)


def _unary(node: ast.Unary) -> Doc:
    if node.op == "not":
        return ["not ", expr_doc(node.operand, NOT)]
    return ["-", expr_doc(node.operand, NEG)]


def _binary(node: ast.Binary) -> Doc:
    """``a + b - c`` as one flat list: a chain of ten thousand terms must not recurse."""
    left, right = _OPERANDS[_BINARY_PREC[node.op]]
    first, links = ast.binary_chain(node)
    parts: list[Doc] = [expr_doc(first, left)]
    for link in links:
        parts += [f" {link.op} ", expr_doc(link.right, right)]
    return parts


def _conditional(node: ast.Conditional) -> Doc:
    return [expr_doc(node.then, OR), " if ", expr_doc(node.condition, OR), " else ",
            expr_doc(node.otherwise, COND)]


_EXPR_DOCS: dict[type, Callable[..., Doc]] = {
    ast.Literal: _literal,
    ast.BlockString: _block_string,
    ast.Name: _name,
    ast.ListExpr: lambda n: Group("[", [expr_doc(i) for i in n.items], "]"),
    ast.DictExpr: _dict,
    ast.Comprehension: _comprehension,
    ast.Call: lambda n: [expr_doc(n.func, POSTFIX), _args(n.args)],
    ast.Pipe: _pipe,
    ast.Attribute: lambda n: [expr_doc(n.value, POSTFIX), ".", n.attr],
    ast.Index: lambda n: [expr_doc(n.value, POSTFIX), "[", expr_doc(n.index), "]"],
    ast.Unary: _unary,
    ast.Binary: _binary,
    ast.Conditional: _conditional,
}


def type_text(ref: ast.TypeRef | None) -> str:
    if ref is None:
        return "json"
    text = ref.name if ref.arg is None else f"{ref.name}[{type_text(ref.arg)}]"
    return text + "?" if ref.optional else text


def _signature(decl: ast.Decl) -> list[Doc]:
    """``kind name@N(params) -> Type`` of prompts, agents, tools, filters, flows."""
    name = decl.name
    if isinstance(decl, ast.PromptDecl) and decl.version is not None:
        name += f"@{decl.version}"
    params = Group("(", [_param(p) for p in decl.params], ")", hard=any(p.doc is not None for p in decl.params))
    return [f"{decl.kind} {name}", params, f" -> {type_text(decl.returns)}"]


def _param(param: ast.Param) -> Doc:
    doc = _bare_param(param)
    return Documented(param.doc.lines, doc) if param.doc is not None else doc


def _bare_param(param: ast.Param) -> Doc:
    """``name: type`` and its ``= default``, without the doc comment."""
    doc: Doc = f"{param.name}: {type_text(param.type)}"
    return [doc, " = ", expr_doc(param.default)] if param.default is not None else doc


# ------------------------------------------------------------------ comments

Pos = tuple[int, int]
_END: Pos = (1 << 30, 0)
_DOCUMENTABLE = (ast.Decl, ast.Param, ast.Field, ast.EnumMember)


def _start(node: ast.Node) -> Pos:
    return (node.span.line, node.span.col)


def _last_char(span) -> Pos:
    return (span.end_line, max(span.end_col - 1, 1))


class _Emitter:
    """Output lines plus the comments still waiting for a place."""

    def __init__(self, comments: list[ast.Comment]) -> None:
        self.pending = deque(sorted(comments, key=lambda c: (c.line, c.col)))
        self.lines: list[str] = []
        self.commented: set[int] = set()  # indexes of lines with a trailing comment
        # Source line of the last item printed in the current block; None at a
        # block's start, where no blank line is ever printed.
        self.last_end: int | None = None

    def gap(self, line: int) -> None:
        """One blank line before an item at source ``line`` if the source had one."""
        if self.last_end is not None and line > self.last_end + 1:
            self.lines.append("")
        self.last_end = line - 1

    def comment_line(self, comment: ast.Comment, indent: int, clamp: int | None = None) -> None:
        line = comment.line if clamp is None else min(comment.line, clamp)
        self.gap(line)
        self.lines.append(" " * indent + comment.text)
        self.last_end = line if line == comment.line else line - 1

    def flush(self, limit: int, indent: int, clamp: int | None = None) -> int:
        """Print comments above source line ``limit`` on their own lines.

        Those at or after ``clamp`` sit inside the node about to be printed
        (which starts there): they go before it, with no blank line between.
        """
        count = 0
        while self.pending and self.pending[0].line < limit:
            self.comment_line(self.pending.popleft(), indent, clamp)
            count += 1
        return count

    def pending_before(self, pos: Pos) -> bool:
        return bool(self.pending) and (self.pending[0].line, self.pending[0].col) < pos

    def take(self, last_line: int, before: Pos) -> list[ast.Comment]:
        taken = []
        while self.pending and self.pending[0].line <= last_line and self.pending_before(before):
            taken.append(self.pending.popleft())
        return taken

    def claim(self, line: int, before: Pos) -> None:
        """Put a trailing comment of source ``line`` (ahead of ``before``) on the last line."""
        if not self.pending or len(self.lines) - 1 in self.commented:
            return
        comment = self.pending[0]
        if comment.line == line and not comment.own_line and self.pending_before(before):
            self.pending.popleft()
            self.append_comment(comment)

    def append_comment(self, comment: ast.Comment) -> None:
        self.lines[-1] += "  " + comment.text
        self.commented.add(len(self.lines) - 1)

    def doc_lines(self, node: ast.Node, indent: int) -> None:
        """The ``##`` lines of a documented node, right above where it is printed.

        A ``##`` comment that documents nothing (one moved out of the node's
        inside) must not end up right above a node that takes doc comments:
        there it would document it. A blank line keeps it apart.
        """
        if isinstance(node, _DOCUMENTABLE) and self.lines and is_doc_comment_text(self.lines[-1].strip()):
            self.lines.append("")
            self.last_end = None
        doc = getattr(node, "doc", None)
        if doc is None:
            return
        self.gap(doc.span.line)
        self.lines.extend(" " * indent + line for line in doc.lines)
        self.last_end = doc.span.end_line

    def leaf(self, node: ast.Node, doc: Doc, indent: int, after: Pos) -> None:
        """A node printed as one logical line (entry, field, statement…)."""
        self.flush(node.span.end_line, indent, clamp=node.span.line)
        self.doc_lines(node, indent)
        self.gap(node.span.line)
        self.lines.extend(layout(doc, indent))
        self.last_end = node.span.end_line
        self.claim(node.span.end_line, after)


# ------------------------------------------------------------------- blocks

EmitChild = Callable[[_Emitter, ast.Node, int, Pos], None]


def _children(out: _Emitter, children: list, indent: int, close: Pos, emit: EmitChild,
              header_unknown: bool = False) -> None:
    """Children one per line, then the comments left before the closing brace.

    ``header_unknown``: the line of the opening brace is not known (``else``),
    so a gap before the first child may be that line rather than a blank one.
    """
    out.last_end = None
    for i, child in enumerate(children):
        after = _start(children[i + 1]) if i + 1 < len(children) else close
        out.flush(child.span.line, indent)
        if i == 0 and header_unknown:
            out.last_end = None
        emit(out, child, indent, after)
    out.flush(close[0], indent)


def _braced(out: _Emitter, node: ast.Node, indent: int, header: list[Doc], header_line: int,
            children: list, emit: EmitChild, close: Pos, after: Pos) -> None:
    """``header {`` children ``}``; ``header {}`` when empty."""
    out.flush(header_line, indent, clamp=node.span.line)
    out.doc_lines(node, indent)
    out.gap(node.span.line)
    head = layout([*header, " {"], indent)
    if not children and not out.pending_before(close):
        head[-1] += "}"
        out.lines.extend(head)
    else:
        out.lines.extend(head)
        out.claim(header_line, _start(children[0]) if children else close)
        _children(out, children, indent + INDENT, close, emit)
        out.lines.append(" " * indent + "}")
    out.last_end = node.span.end_line
    out.claim(close[0], after)


def _entry(out: _Emitter, entry: ast.Entry, indent: int, after: Pos) -> None:
    out.leaf(entry, [entry.key, ": ", expr_doc(entry.value)], indent, after)


def _pipeline_entry(out: _Emitter, entry: ast.Entry, indent: int, after: Pos) -> None:
    """A pipeline's `steps: [...]` is always one step per line, each keeping its comments."""
    steps = entry.value
    if entry.key != "steps" or not isinstance(steps, ast.ListExpr) or not steps.items:
        _entry(out, entry, indent, after)
        return
    out.flush(entry.span.line, indent, clamp=entry.span.line)
    out.gap(entry.span.line)
    out.lines.append(" " * indent + "steps: [")
    close = _last_char(steps.span)
    out.claim(entry.span.line, _start(steps.items[0]))
    _children(out, steps.items, indent + INDENT, close, _pipeline_step)
    out.lines.append(" " * indent + "]")
    out.last_end = entry.span.end_line
    out.claim(close[0], after)


def _pipeline_step(out: _Emitter, step: ast.Node, indent: int, after: Pos) -> None:
    out.leaf(step, [expr_doc(step), ","], indent, after)


def _field(out: _Emitter, node: ast.Field, indent: int, after: Pos) -> None:
    out.leaf(node, f"{node.name}: {type_text(node.type)}", indent, after)


def _member(out: _Emitter, node: ast.EnumMember, indent: int, after: Pos) -> None:
    out.leaf(node, node.name, indent, after)


# --------------------------------------------------------------- statements

def _statement(out: _Emitter, stmt: ast.Node, indent: int, after: Pos) -> None:
    if isinstance(stmt, ast.If):
        _if(out, stmt, indent, after)
    elif isinstance(stmt, ast.Return):
        out.leaf(stmt, ["return ", expr_doc(stmt.value)], indent, after)
    else:
        out.leaf(stmt, [stmt.name, " = ", expr_doc(stmt.value)], indent, after)


def _arms(stmt: ast.If) -> list[tuple[list[Doc], int, list, Pos]]:
    """(header, header's source line, body, closing brace) of each if/elif/else arm."""
    arms = []
    for i, branch in enumerate(stmt.branches):
        keyword = "if " if i == 0 else "} elif "
        close = (branch.end_span.line, branch.end_span.col)
        arms.append(([keyword, expr_doc(branch.condition), " {"], branch.condition.span.end_line,
                     branch.body, close))
    if stmt.orelse is not None:
        previous_close = arms[-1][3]
        arms.append((["} else {"], previous_close[0], stmt.orelse, _last_char(stmt.span)))
    return arms


def _if(out: _Emitter, stmt: ast.If, indent: int, after: Pos) -> None:
    inner = indent + INDENT
    arms = _arms(stmt)
    for i, (header, header_line, body, close) in enumerate(arms):
        first = _start(body[0]) if body else close
        if i == 0:
            out.flush(header_line, indent, clamp=stmt.span.line)
            out.gap(stmt.span.line)
            out.lines.extend(layout(header, indent))
            out.claim(header_line, first)
        else:
            _joint(out, layout(header, indent), header_line, first, inner)
        _children(out, body, inner, close, _statement, header_unknown=header[0] == "} else {")
    out.lines.append(" " * indent + "}")
    out.last_end = stmt.span.end_line
    out.claim(stmt.span.end_line, after)


def _joint(out: _Emitter, lines: list[str], header_line: int, first: Pos, inner: int) -> None:
    """``} elif c {`` or ``} else {``: one trailing comment may stay on it."""
    comments = out.take(header_line, first)
    trailing = next((c for c in reversed(comments) if not c.own_line), None)
    if len(lines) > 1:
        trailing = None
    out.last_end = None  # the closing brace's line lies between: no blank line
    for comment in comments:
        if comment is not trailing:
            out.comment_line(comment, inner)
    out.lines.extend(lines)
    if trailing is not None:
        out.append_comment(trailing)


# ------------------------------------------------------------- declarations

def _decl(out: _Emitter, decl: ast.Decl, after: Pos) -> None:
    close = _last_char(decl.span)
    if isinstance(decl, ast.ToolDecl) and _commented_params(out, decl):
        _tool_with_commented_params(out, decl, after)
    elif isinstance(decl, ast.ToolDecl):
        out.leaf(decl, [*_signature(decl), " = ", expr_doc(decl.impl)], 0, after)
    elif isinstance(decl, ast.TypeDecl):
        _braced(out, decl, 0, [f"type {decl.name}"], decl.name_span.line, decl.fields, _field,
                close, after)
    elif isinstance(decl, ast.EnumDecl):
        _enum(out, decl, close, after)
    elif isinstance(decl, ast.FlowDecl):
        end = (decl.end_span.line, decl.end_span.col) if decl.end_span else close
        _braced(out, decl, 0, _signature(decl), _header_line(decl), decl.body, _statement, end,
                after)
    elif isinstance(decl, (ast.PromptDecl, ast.AgentDecl)):
        _braced(out, decl, 0, _signature(decl), _header_line(decl), decl.entries, _entry, close,
                after)
    elif isinstance(decl, ast.PipelineDecl):
        _braced(out, decl, 0, [f"pipeline {decl.name}"], decl.name_span.line, decl.entries,
                _pipeline_entry, close, after)
    else:
        _braced(out, decl, 0, [f"{decl.kind} {decl.name}"], decl.name_span.line, decl.entries,
                _entry, close, after)


def _commented_params(out: _Emitter, decl: ast.ToolDecl) -> bool:
    """Whether an own-line comment (not a `##` doc, which its parameter keeps) sits among a tool's parameters.

    The pending comments are in source order: the scan stops at the first one
    past the parameters, so it never walks the rest of the file.
    """
    if not decl.params:
        return False
    last = decl.params[-1].span.line
    for comment in out.pending:
        if comment.line > last:
            return False
        if comment.own_line and comment.line > decl.span.line:
            return True
    return False


def _tool_with_commented_params(out: _Emitter, decl: ast.ToolDecl, after: Pos) -> None:
    """One parameter a line, each after the comments above it in the source (where `##` docs are)."""
    out.flush(decl.span.line, 0)
    out.doc_lines(decl, 0)
    out.gap(decl.span.line)
    out.lines.append(f"{decl.kind} {decl.name}(")
    ends = [_start(p) for p in decl.params[1:]] + [_start(decl.returns) if decl.returns is not None else _END]
    for param, end in zip(decl.params, ends):
        out.last_end = None
        out.flush(param.span.line, 2)
        out.doc_lines(param, 2)
        out.lines.extend(layout([_bare_param(param), ","], 2))
        out.claim(param.span.end_line, end)
    out.lines.extend(layout([f") -> {type_text(decl.returns)} = ", expr_doc(decl.impl)], 0))
    out.last_end = decl.span.end_line
    out.claim(decl.span.end_line, after)


def _header_line(decl: ast.Decl) -> int:
    """Source line where a signature ends (and its ``{`` normally is)."""
    returns = getattr(decl, "returns", None)
    return returns.span.end_line if returns is not None else decl.name_span.line


def _enum(out: _Emitter, decl: ast.EnumDecl, close: Pos, after: Pos) -> None:
    names = ", ".join(m.name for m in decl.members)
    one_line = f"enum {decl.name} {{ {names} }}" if names else f"enum {decl.name} {{}}"
    documented = any(m.doc is not None for m in decl.members)
    if _fits(one_line) and not out.pending_before(close) and not documented:
        out.leaf(decl, one_line, 0, after)
    else:
        _braced(out, decl, 0, [f"enum {decl.name}"], decl.name_span.line, decl.members, _member,
                close, after)


def _emit_module(out: _Emitter, module: ast.Module) -> None:
    items: list[ast.Node] = [*module.imports, *module.decls]
    starts = sorted(_start(item) for item in items) + [_END]
    previous: ast.Node | None = None
    for item in items:
        # Imports move to the top: a trailing comment ends where the source's next item starts.
        after = starts[bisect.bisect_right(starts, _start(item))]  # _END is last: always found
        if isinstance(previous, ast.Decl) or (previous is not None and isinstance(item, ast.Decl)):
            out.lines.append("")  # exactly one blank line between declarations
            out.last_end = None
        flushed = out.flush(item.span.line, 0)
        if isinstance(item, ast.Import):
            if isinstance(previous, ast.Import) and not flushed:
                out.last_end = None  # consecutive imports: no blank line
            out.leaf(item, f"import {quote(item.path)}", 0, after)
        else:
            _decl(out, item, after)
        previous = item
    out.flush(_END[0], 0)
