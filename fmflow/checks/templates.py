"""E202: every variable a prompt's template reads must be one of its parameters.

Jinja2's own parser finds the variables; each unknown one is reported at its
line inside the block string. A template that Jinja cannot parse is E001, and
so is one nested deeper than Jinja2 can compile (it turns templates into
Python code, which allows 20 nested `for` blocks, 100 indentation levels and
200 nested brackets): a template whose tree is deep is compiled here, as the
runtime would, so that the run never meets the error.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .. import ast
from ..diagnostics import suggestion_help
from .context import CheckContext

# Names Jinja provides itself (jinja2.defaults.DEFAULT_NAMESPACE), plus `loop`.
JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop"})


@lru_cache(maxsize=1)
def _environment():
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment()


def check_templates(ctx: CheckContext) -> None:
    for decl in ctx.module.decls:
        if not isinstance(decl, (ast.PromptDecl, ast.AgentDecl)):
            continue
        params = {p.name for p in decl.params}
        for key in ("template", "system"):
            entry = decl.entry(key)
            if entry is not None and isinstance(entry.value, (ast.BlockString, ast.Literal)) \
                    and isinstance(entry.value.value, str):
                _check_template(ctx, decl, entry.value, params)


def _check_template(ctx: CheckContext, decl: ast.Decl, node, params: set[str]) -> None:
    from jinja2 import TemplateSyntaxError, meta, nodes

    text = node.value
    try:
        tree = _environment().parse(text)
        too_deep = _uncompilable(tree) if _depth(tree) > COMPILE_CHECK_DEPTH else None
        undeclared = meta.find_undeclared_variables(tree) - params - JINJA_GLOBALS if too_deep is None else set()
    except TemplateSyntaxError as error:
        span = _line_span(ctx, node, error.lineno or 1, None)
        ctx.diagnostics.add("E001", f"template syntax error: {error.message}", span,
                            "templates are Jinja2: {{ value }}, {% for x in xs %}…{% endfor %}")
        return
    except RecursionError:  # Jinja2's parser and analysis recurse too
        too_deep = "maximum recursion depth exceeded"
    if too_deep is not None:
        ctx.diagnostics.add("E001", f"template nested too deeply for Jinja2 ({too_deep})",
                            _line_span(ctx, node, 1, None),
                            "nest fewer {% for %}/{% if %} blocks and brackets; compute parts in the flow")
        return
    reported: set[str] = set()
    for name_node in tree.find_all(nodes.Name):
        name = name_node.name
        if name in undeclared and name not in reported and name_node.ctx == "load":
            reported.add(name)
            ctx.diagnostics.add(
                "E202", f"template of {decl.kind} '{decl.name}' uses '{name}', which is not a parameter",
                _line_span(ctx, node, name_node.lineno, name),
                suggestion_help(name, params) or f"add a parameter '{name}: …' to {decl.kind} '{decl.name}'")


COMPILE_CHECK_DEPTH = 12  # usual templates are 5 to 10 levels deep and are not compiled here


def _depth(tree) -> int:
    """Levels of the template's tree, walked with a stack."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
    return deepest


def _uncompilable(tree) -> str | None:
    """Why Jinja2 cannot turn the template into Python code, if it cannot."""
    try:
        _environment().compile(tree)
    except (SyntaxError, RecursionError, MemoryError) as error:
        return getattr(error, "msg", None) or str(error) or type(error).__name__
    return None


def _line_span(ctx: CheckContext, node, template_line: int, name: str | None):
    """The span of ``name`` (or the whole line) at a template line, in the file."""
    if isinstance(node, ast.BlockString):
        line = node.first_line + template_line - 1
    else:
        line = node.span.line
    line = min(max(line, node.span.line), node.span.end_line)
    text = ctx.source.line_text(line)
    start_col = 1
    length = max(1, len(text.strip()))
    if text.strip():
        start_col = len(text) - len(text.lstrip()) + 1
    if name:
        match = _name_in_tag(text, name)
        if match is not None:
            start_col, length = match + 1, len(name)
    start = ctx.source.offset(line, start_col)
    return ctx.source.span(start, start + length)


_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{\{.*|\{%.*")


def _name_in_tag(text: str, name: str) -> int | None:
    """Offset of ``name`` inside a ``{{ }}``/``{% %}`` tag on this line (or anywhere, failing that)."""
    word = re.compile(rf"(?<![\w.]){re.escape(name)}(?!\w)")
    for tag in _TAG.finditer(text):
        match = word.search(text, tag.start(), tag.end())
        if match:
            return match.start()
    match = word.search(text)
    return match.start() if match else None
