"""What a template reads, with the types of its parameters: fields, filters, loop variables.

A walk over Jinja2's parsed template that knows, at each place, the names in
scope and their fmflow types (the prompt's parameters; `{% for d in docs %}`
gives `d` the item type of `docs`; anything Jinja computes itself is of
unknown type). It finds

- fields read from a value of a declared type that the type lacks
  (`{{ email.subjet }}`, `{{ d.content }}` for a `Doc`): E104;
- filters and tests that are neither the flow's declared filters nor
  Jinja's own: E202;
- for each name Jinja reports as undefined, the loop variables in scope at
  that place, for the did-you-mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator

from ..types import ListType, StructType, Type, strip_optional


@dataclass
class Loop:
    """An enclosing `{% for VAR in ITERABLE %}`: ``var`` is None for `k, v` targets."""

    var: str | None
    iterable: str | None


@dataclass
class Finding:
    """Something to report, at a template line: kind is "field", "filter", "test" or "name"."""

    kind: str
    name: str
    line: int
    owner: Type | None = None                           # the type lacking the field
    loops: list[Loop] = field(default_factory=list)     # loops around a name


class TemplateScope:
    """Walks one parsed template. ``fields_of`` gives a struct's field types."""

    def __init__(self, params: dict[str, Type], fields_of, filters: set[str], tests: set[str]) -> None:
        self.params = params
        self.fields_of = fields_of
        self.filters = filters
        self.tests = tests
        self.findings: list[Finding] = []

    def walk(self, tree) -> list[Finding]:
        self._visit_all(tree.body, dict(self.params), [])
        return self.findings

    # ------------------------------------------------------------ visiting
    def _visit_all(self, items, env: dict[str, Type | None], loops: list[Loop]) -> None:
        for item in items:
            self._visit(item, env, loops)

    def _visit(self, node, env: dict[str, Type | None], loops: list[Loop]) -> None:
        from jinja2 import nodes

        if isinstance(node, nodes.For):
            self._visit_for(node, env, loops)
        elif isinstance(node, (nodes.Macro, nodes.CallBlock)):
            inner = {**env, **{a.name: None for a in getattr(node, "args", [])}, "caller": None}
            self._visit_all(node.iter_child_nodes(), inner, loops)
        elif isinstance(node, nodes.Assign) and isinstance(node.target, nodes.Name):
            self._visit(node.node, env, loops)
            env[node.target.name] = None  # `{% set x = … %}`: visible below, of a type Jinja decides
        elif isinstance(node, nodes.Name):
            if node.ctx == "load" and node.name not in env:
                self.findings.append(Finding("name", node.name, node.lineno, loops=list(loops)))
            elif node.ctx in ("store", "param"):
                env.setdefault(node.name, None)
        else:
            self._visit_expression(node, env, loops)

    def _visit_expression(self, node, env, loops) -> None:
        from jinja2 import nodes

        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            self._check_field(node, env)
        elif isinstance(node, nodes.Filter) and node.name not in self.filters:
            self.findings.append(Finding("filter", node.name, node.lineno))
        elif isinstance(node, nodes.Test) and node.name not in self.tests:
            self.findings.append(Finding("test", node.name, node.lineno))
        self._visit_all(node.iter_child_nodes(), env, loops)

    def _visit_for(self, node, env, loops) -> None:
        from jinja2 import nodes

        self._visit(node.iter, env, loops)
        item = self._item_type(self.type_of(node.iter, env))
        inner = {**env, "loop": None}
        for target in _store_names(node.target):
            inner[target] = item if isinstance(node.target, nodes.Name) else None
        var = node.target.name if isinstance(node.target, nodes.Name) else None
        body_loops = [*loops, Loop(var, _path_text(node.iter))]
        if node.test is not None:
            self._visit(node.test, inner, body_loops)
        self._visit_all(node.body, inner, body_loops)
        self._visit_all(node.else_, dict(env), loops)

    # --------------------------------------------------------------- types
    def type_of(self, node, env: dict[str, Type | None]) -> Type | None:
        """The fmflow type of a name or of fields read from one; None when unknown."""
        from jinja2 import nodes

        if isinstance(node, nodes.Name):
            return env.get(node.name)
        attr = _attribute(node)
        if attr is None:
            if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) \
                    and isinstance(node.arg.value, int):
                base = _plain(self.type_of(node.node, env))
                return base.item if isinstance(base, ListType) else None
            return None
        base = _plain(self.type_of(node.node, env))
        return self.fields_of(base).get(attr) if isinstance(base, StructType) else None

    def _item_type(self, t: Type | None) -> Type | None:
        t = _plain(t)
        return t.item if isinstance(t, ListType) else None

    def _check_field(self, node, env) -> None:
        attr = _attribute(node)
        if attr is None:
            return
        plain = _plain(self.type_of(node.node, env))
        if isinstance(plain, StructType) and attr not in self.fields_of(plain):
            self.findings.append(Finding("field", attr, node.lineno, owner=plain))


def _plain(t: Type | None) -> Type | None:
    return strip_optional(t) if t is not None else None


def _attribute(node) -> str | None:
    """The field a `x.name` or `x["name"]` reads."""
    from jinja2 import nodes

    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def _store_names(target) -> Iterator[str]:
    from jinja2 import nodes

    for name in target.find_all(nodes.Name) if not isinstance(target, nodes.Name) else [target]:
        yield name.name


def _path_text(node) -> str | None:
    """`docs` or `email.attachments` as written, for a name and its fields."""
    from jinja2 import nodes

    parts: list[str] = []
    while isinstance(node, nodes.Getattr):
        parts.append(node.attr)
        node = node.node
    if not isinstance(node, nodes.Name):
        return None
    return ".".join([node.name, *reversed(parts)])


_ATTRIBUTE = r"(?:\.\s*{0}(?!\w)|\[\s*[\"']{0}[\"']\s*\])"


def field_offset(text: str, name: str) -> int | None:
    """Offset of the field ``name`` in `.name` or `["name"]` on a template line."""
    match = re.search(_ATTRIBUTE.format(re.escape(name)), text)
    if match is None:
        return None
    return match.start() + match.group().index(name)


def filter_offset(text: str, name: str, test: bool = False) -> int | None:
    """Offset of a filter after `|` (or a test after `is`) on a template line."""
    pattern = rf"\bis\s+(?:not\s+)?{re.escape(name)}(?!\w)" if test else rf"\|\s*{re.escape(name)}(?!\w)"
    match = re.search(pattern, text)
    return None if match is None else match.end() - len(name)
