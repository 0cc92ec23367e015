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
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .. import ast
from ..diagnostics import Diagnostics, did_you_mean, suggestion_help
from ..types import STR, Type
from .context import CheckContext
from .resolve import TypeResolver
from .template_scope import Finding, Loop, TemplateScope, field_offset, filter_offset

# Names Jinja provides itself (jinja2.defaults.DEFAULT_NAMESPACE), plus `loop`.
JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop"})
# The variable that holds a typed prompt's instructions for the reply's JSON shape.
OUTPUT_FORMAT = "output_format"


class _AnyName(dict):
    """Jinja's table of filters or tests, for checking only: every name is known, so
    that Jinja's analysis goes on past an unknown filter, which this pass reports itself."""

    def get(self, key, default=None):
        return super().get(key) or _placeholder


def _placeholder(*args, **kwargs):  # pragma: no cover - never called: checking renders nothing
    return None


@lru_cache(maxsize=1)
def _environment():
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment()
    env.filters = _AnyName(env.filters)
    env.tests = _AnyName(env.tests)
    return env


@lru_cache(maxsize=1)
def jinja_filters() -> frozenset[str]:
    """The filters every template may use: Jinja's own (fmflow renders `tojson` itself)."""
    from jinja2.filters import FILTERS

    return frozenset(FILTERS) | {"tojson"}


def check_templates(ctx: CheckContext) -> None:
    resolver = TypeResolver(ctx, Diagnostics())  # types are reported where they are written
    filters = {name: decls[0] for name, decls in ctx.symbols.decls.items() if isinstance(decls[0], ast.FilterDecl)}
    for decl in ctx.module.decls:
        if not isinstance(decl, (ast.PromptDecl, ast.AgentDecl)):
            continue
        params = {p.name: resolver.resolve(p.type) for p in decl.params}
        typed = resolver.resolve(decl.returns) != STR
        if typed and OUTPUT_FORMAT in params:
            param = next(p for p in decl.params if p.name == OUTPUT_FORMAT)
            ctx.diagnostics.add(
                "E102", f"parameter '{OUTPUT_FORMAT}' of {decl.kind} '{decl.name}' hides the reply's JSON "
                f"instructions, which its templates get under that name", param.span.head(len(param.name)),
                "rename the parameter")
        template = _Template(ctx, decl, params, typed, filters, resolver)
        for key in ("template", "system"):
            entry = decl.entry(key)
            if entry is not None and isinstance(entry.value, (ast.BlockString, ast.Literal)) \
                    and isinstance(entry.value.value, str):
                template.check(entry.value)


class _Template:
    """Checks the templates of one prompt or agent."""

    def __init__(self, ctx: CheckContext, decl: ast.Decl, params: dict[str, Type], typed: bool,
                 filters: dict[str, ast.Decl], resolver: TypeResolver) -> None:
        self.ctx, self.decl, self.params, self.typed = ctx, decl, params, typed
        self.filters = filters
        self.resolver = resolver

    def check(self, node) -> None:
        analysis = template_analysis(node.value)
        if analysis.tree is None:
            message, line, help_text = analysis.error
            self.ctx.diagnostics.add("E001", message, _line_span(self.ctx, node, line, None), help_text)
            return
        undeclared = analysis.undeclared - set(self.params) - JINJA_GLOBALS
        scope = TemplateScope(self.params, self.resolver.fields, jinja_filters() | set(self.filters),
                              set(_environment().tests))
        reported: set[tuple[str, str]] = set()
        for finding in scope.walk(analysis.tree):
            if finding.kind == "name" and finding.name not in undeclared:
                continue
            if (finding.kind, finding.name) not in reported:
                reported.add((finding.kind, finding.name))
                self._report(node, finding)
        for name, line in analysis.filters:
            if name in self.filters:  # a use of the declared filter (W501)
                span = _line_span(self.ctx, node, line, name, filter_offset)
                self.ctx.refer(span, self.filters[name])

    def _report(self, node, finding: Finding) -> None:
        what = f"template of {self.decl.kind} '{self.decl.name}'"
        add, name = self.ctx.diagnostics.add, finding.name
        if finding.kind == "field":
            fields = self.resolver.fields(finding.owner)
            add("E104", f"unknown field '{name}' of type {finding.owner} in the {what}",
                _line_span(self.ctx, node, finding.line, name, field_offset),
                suggestion_help(name, fields) or f"fields of {finding.owner}: {', '.join(fields)}")
        elif finding.kind in ("filter", "test"):
            known = jinja_filters() | set(self.filters) if finding.kind == "filter" else set(_environment().tests)
            locate = filter_offset if finding.kind == "filter" else _test_offset
            add("E202", f"{what} uses the {finding.kind} '{name}', which is neither declared nor one of Jinja's",
                _line_span(self.ctx, node, finding.line, name, locate),
                suggestion_help(name, known) or (f"declare it: filter {name}(text: str) -> str = python(\"module:"
                                                 f"{name}\"), or import it (e.g. import \"std/filters\")"
                                                 if finding.kind == "filter" else None))
        elif name == OUTPUT_FORMAT:
            if not self.typed:
                add("E202", f"{what} uses '{OUTPUT_FORMAT}', but {self.decl.kind} '{self.decl.name}' returns str",
                    _line_span(self.ctx, node, finding.line, name),
                    f"'{OUTPUT_FORMAT}' holds the instructions for a typed reply's JSON shape; "
                    "remove it, or give the prompt an output type")
        else:
            add("E202", f"{what} uses '{name}', which is not a parameter",
                _line_span(self.ctx, node, finding.line, name), _name_help(name, finding.loops, self.params, self.decl))


def _name_help(name: str, loops: list[Loop], params: dict[str, Type], decl: ast.Decl) -> str:
    """Loop variables in scope come first: `{{ doc }}` in `{% for d in docs %}` means `d`."""
    loop_vars = [loop.var for loop in loops if loop.var]
    best = did_you_mean(name, loop_vars)
    if best is not None:
        return f"did you mean '{best}'?"
    for loop in reversed(loops):
        if loop.var and loop.iterable:
            items = loop.iterable.rsplit(".", 1)[-1]
            if did_you_mean(name, [items]) or items.startswith(name):
                return f"did you mean '{loop.var}'? ('{loop.var}' is one item of '{loop.iterable}' in this loop)"
    return suggestion_help(name, params) or f"add a parameter '{name}: …' to {decl.kind} '{decl.name}'"


@dataclass(frozen=True)
class TemplateAnalysis:
    """What checking needs of a template's text, whatever prompt it is in: Jinja's
    tree (None when there is none), the variables it reads, the filters it uses
    (name, line), or why it cannot be used (message, line, help)."""

    tree: Any
    undeclared: frozenset[str] = frozenset()
    filters: tuple[tuple[str, int], ...] = ()
    error: tuple[str, int, str] | None = None


# Kept by text: an editor re-checks the file on every change, and files repeat
# templates; large templates (whose trees are several times their size) are not kept.
_KEPT_TEMPLATE_CHARS = 64 * 1024


def template_analysis(text: str) -> TemplateAnalysis:
    return _kept_analysis(text) if len(text) <= _KEPT_TEMPLATE_CHARS else _analyse(text)


@lru_cache(maxsize=512)
def _kept_analysis(text: str) -> TemplateAnalysis:
    return _analyse(text)


def _analyse(text: str) -> TemplateAnalysis:
    from jinja2 import TemplateSyntaxError, meta, nodes

    try:
        tree = _environment().parse(text)
        too_deep = _uncompilable(tree) if _depth(tree) > COMPILE_CHECK_DEPTH else None
        if too_deep is None:
            filters = tuple((used.name, used.lineno) for used in tree.find_all(nodes.Filter))
            return TemplateAnalysis(tree, frozenset(meta.find_undeclared_variables(tree)), filters)
    except TemplateSyntaxError as error:
        return TemplateAnalysis(None, error=(f"template syntax error: {error.message}", error.lineno or 1,
                                             "templates are Jinja2: {{ value }}, {% for x in xs %}…{% endfor %}"))
    except RecursionError:  # Jinja2's parser and analysis recurse too
        too_deep = "maximum recursion depth exceeded"
    return TemplateAnalysis(None, error=(f"template nested too deeply for Jinja2 ({too_deep})", 1,
                                         "nest fewer {% for %}/{% if %} blocks and brackets; compute parts in the flow"))


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


def _line_span(ctx: CheckContext, node, template_line: int, name: str | None, locate=None):
    """The span of ``name`` (or the whole line) at a template line, in the file; ``locate``
    finds it on the line (default: a variable inside a tag)."""
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
        match = (locate or _name_in_tag)(text, name)
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


def _test_offset(text: str, name: str) -> int | None:
    return filter_offset(text, name, test=True)
