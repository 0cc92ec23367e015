"""Checked AST → dataflow graph: the graph the runtime executes and `fmflow graph` draws.

A flow body is a graph, not a script (LANGUAGE.md §4): every node runs as soon
as the values it reads exist. ``build_flow_graph`` turns one flow into a
networkx ``DiGraph`` whose nodes are

- ``input:NAME``: one per flow parameter (kind ``input``);
- ``nN``: one per statement, numbered in source order: an assignment (kind
  ``call`` when its expression calls a prompt, agent, tool, filter,
  retriever or flow, else ``value``), one ``branch`` per ``if``/``elif``
  condition, and one ``return`` per return statement.

Node attributes: ``kind``, ``label`` (short source-like text), ``line``,
``stmt`` (the AST node: Param, Assign, Branch or Return), ``calls`` (the
``(callee name, callee kind)`` pairs in the expression, source order, no
duplicates), ``defines`` (the variable assigned, or None), ``order`` (creation
index, for stable output) and ``gate`` (see below).

Edges: ``kind="data", var=NAME`` from the node defining a variable to every
node reading it, resolved along the statement's path (a name defined in both
arms of an ``if`` and read after it gets an edge from each definition);
``kind="control", label="then"|"else"`` from a branch node to every
first-level node of its arm, and from a branch to the statements after its
``if`` that wait for its outcome (the gate below) — only to those that do
not already read a value of another statement waiting for it. An ``elif``
condition hangs off the previous branch's ``else`` edge. Edges only point
forward in source order, so the graph is acyclic.

``gate`` says when a node may run at all, which the control edges alone do not
say for statements that follow an ``if`` with a returning arm (in
``if len(docs) == 0 { return … }`` followed by ``draft = answer(…)`` the prompt
must not run when the flow already returned). ``None`` means unconditionally;
otherwise a tuple of ``(branch id, "then"|"else")`` of which at least one must
be taken (a branch only evaluates when its own gate holds, so one pair is
enough to describe a path); ``()`` means unreachable (after a return).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from . import ast
from .checks.expressions import CALLABLE_KINDS
from .formatter import expr_doc, flat, type_text
from .types import BUILTIN_STRUCTS

if TYPE_CHECKING:
    import networkx as nx

BUILTIN_TYPES = frozenset(BUILTIN_STRUCTS)
MAX_LABEL = 80


# ---------------------------------------------------------------- building

def build_flow_graph(flow: ast.FlowDecl, declarations: Mapping[str, ast.Decl]) -> "nx.DiGraph":
    """The dataflow graph of ``flow``; ``declarations`` maps top-level names to declarations."""
    return _GraphBuilder(flow, declarations).build()


@dataclass
class _BlockResult:
    env: dict[str, tuple[str, ...]]   # variable → the nodes that may have defined it
    falls_through: bool               # can control reach the end of the block?
    gate: object                      # the gate in force at the end of the block


class _GraphBuilder:
    def __init__(self, flow: ast.FlowDecl, declarations: Mapping[str, ast.Decl]) -> None:
        import networkx as nx

        self.flow = flow
        self.declarations = declarations
        self.graph = nx.DiGraph(name=flow.name)
        self.counter = 0

    def build(self) -> "nx.DiGraph":
        env: dict[str, tuple[str, ...]] = {}
        for param in self.flow.params:
            node = f"input:{param.name}"
            label = f"{param.name}: {type_text(param.type)}"
            if param.default is None:
                self._add_node(node, "input", label, param, [], param.name, None)
            else:  # a default may call something and read the inputs before it
                self._add_node(node, "input", f"{label} = {expr_text(param.default)}", param,
                               expression_calls(param.default, self.declarations), param.name, None)
                for var in expression_reads(param.default):
                    for source in env.get(var, ()):
                        self.graph.add_edge(source, node, kind="data", var=var)
            env[param.name] = (node,)
        self._block(self.flow.body, env, gate=None, control=None)
        self._gate_edges()
        return self.graph

    def _gate_edges(self) -> None:
        """Control edges from the branches a statement after a returning ``if`` waits for.

        A statement that reads a value of one waiting for the same outcome waits
        through it, so it gets no edge of its own: the drawing stays readable.
        """
        for node, data in list(self.graph.nodes(data=True)):
            sources = [u for u, _v, d in self.graph.in_edges(node, data=True) if d["kind"] == "data"]
            for branch, arm in data.get("gate") or ():
                waits_through = any((branch, arm) in (self.graph.nodes[u].get("gate") or ()) for u in sources)
                if not self.graph.has_edge(branch, node) and not waits_through:
                    self.graph.add_edge(branch, node, kind="control", label=arm)

    # ----------------------------------------------------------- nodes
    def _add_node(self, node_id: str, kind: str, label: str, stmt: ast.Node,
                  calls: list[tuple[str, str]], defines: str | None, gate) -> None:
        self.graph.add_node(node_id, kind=kind, label=shorten(label), line=stmt.span.line, stmt=stmt,
                            calls=calls, defines=defines, order=len(self.graph), gate=gate)

    def _new_id(self) -> str:
        self.counter += 1
        return f"n{self.counter}"

    def _statement_node(self, kind: str, label: str, stmt: ast.Node, expr: ast.Node,
                        env: dict[str, tuple[str, ...]], gate, control, defines: str | None = None) -> str:
        node = self._new_id()
        calls = expression_calls(expr, self.declarations)
        if kind == "assign":
            kind = "call" if any(k in CALLABLE_KINDS for _, k in calls) else "value"
        self._add_node(node, kind, label, stmt, calls, defines, gate)
        for var in expression_reads(expr):
            for source in env.get(var, ()):
                self.graph.add_edge(source, node, kind="data", var=var)
        if control is not None:
            self.graph.add_edge(control[0], node, kind="control", label=control[1])
        return node

    # ------------------------------------------------------ statements
    def _block(self, stmts: list[ast.Stmt], env: dict[str, tuple[str, ...]], gate, control) -> _BlockResult:
        env = dict(env)
        falls_through = True
        for stmt in stmts:
            if not falls_through:
                gate = ()
            if isinstance(stmt, ast.Assign):
                node = self._statement_node("assign", f"{stmt.name} = {expr_text(stmt.value)}", stmt,
                                            stmt.value, env, gate, control, defines=stmt.name)
                env[stmt.name] = (node,)
            elif isinstance(stmt, ast.Return):
                self._statement_node("return", f"return {expr_text(stmt.value)}", stmt, stmt.value,
                                     env, gate, control)
                falls_through = False
            elif isinstance(stmt, ast.If):
                result = self._if(stmt, env, gate, control)
                env = result.env
                if falls_through:
                    gate = result.gate
                falls_through = falls_through and result.falls_through
        return _BlockResult(env, falls_through, gate)

    def _if(self, stmt: ast.If, env: dict[str, tuple[str, ...]], gate, control) -> _BlockResult:
        arms: list[tuple[object, _BlockResult]] = []  # (entry gate, result) per arm
        branch_ids: list[str] = []
        for i, branch in enumerate(stmt.branches):
            keyword = "if" if i == 0 else "elif"
            if i == 0:
                branch_gate, branch_control = gate, control
            else:
                branch_control = (branch_ids[-1], "else")
                branch_gate = (branch_control,)
            node = self._statement_node("branch", f"{keyword} {expr_text(branch.condition)}", branch,
                                        branch.condition, env, branch_gate, branch_control)
            branch_ids.append(node)
            entry = ((node, "then"),)
            arms.append((entry, self._block(branch.body, env, entry, (node, "then"))))
        else_entry = ((branch_ids[-1], "else"),)
        if stmt.orelse is not None:
            arms.append((else_entry, self._block(stmt.orelse, env, else_entry, (branch_ids[-1], "else"))))
        else:
            arms.append((else_entry, _BlockResult(dict(env), True, else_entry)))
        return _BlockResult(_merge_envs(env, [r for _, r in arms]), any(r.falls_through for _, r in arms),
                            _fall_through_gate(gate, branch_ids, arms))


def _merge_envs(before: dict[str, tuple[str, ...]], arms: list[_BlockResult]) -> dict[str, tuple[str, ...]]:
    live = [arm.env for arm in arms if arm.falls_through]
    if not live:
        return dict(before)
    merged: dict[str, tuple[str, ...]] = {}
    for env in live:
        for var, sources in env.items():
            merged[var] = tuple(dict.fromkeys((*merged.get(var, ()), *sources)))
    return merged


def _fall_through_gate(gate, branch_ids: list[str], arms: list[tuple[object, _BlockResult]]):
    """The gate under which control leaves an ``if``: any arm that falls through.

    A run of arms at the end that all fall through without narrowing their
    gate collapses into the ``else`` of the branch before them; when every
    arm does, the ``if`` leaves the gate as it was.
    """
    k = len(arms)
    while k > 0 and arms[k - 1][1].falls_through and arms[k - 1][1].gate == arms[k - 1][0]:
        k -= 1
    if k == 0:
        return gate
    pairs: list[tuple[str, str]] = []
    for _entry, result in arms[:k]:
        if result.falls_through and result.gate:
            pairs.extend(result.gate)
    if k < len(arms):
        pairs.append((branch_ids[k - 1], "else"))
    return tuple(dict.fromkeys(pairs))


# ------------------------------------------------------------- expressions

def expression_calls(expr: ast.Node, declarations: Mapping[str, ast.Decl]) -> list[tuple[str, str]]:
    """``(callee name, callee kind)`` of every call and pipe in ``expr``, source order, no repeats.

    Callee names are written without their ``@N`` version; names that are not
    declarations are built-in functions (``Doc`` is the built-in type).
    """
    found: list[tuple[str, str]] = []

    def callee(name: str) -> None:
        decl = declarations.get(name)
        kind = decl.kind if decl is not None else ("type" if name in BUILTIN_TYPES else "builtin")
        found.append((name, kind))

    # A loop over a stack of nodes and callee names, not recursion: chains run ten thousand deep.
    stack: list[ast.Node | str] = [expr]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            callee(item)
        elif isinstance(item, ast.Pipe):
            stack.extend(reversed([item.value, item.filter, *item.args]))
        elif isinstance(item, ast.Call) and isinstance(item.func, ast.Name):
            stack.extend(reversed([item.func.id, *item.args]))
        else:
            stack.extend(reversed(list(item.children())))
    return list(dict.fromkeys(found))


def expression_reads(expr: ast.Node) -> list[str]:
    """Names read by ``expr`` as values (not callees, not comprehension variables), source order."""
    return list(dict.fromkeys(name.id for name in ast.read_names(expr, callees=False)))


# ------------------------------------------------------------ flow calls

# --------------------------------------------------------------- labels

def expr_text(expr: ast.Node) -> str:
    """One-line source text of an expression, as `fmflow fmt` writes it."""
    if isinstance(expr, ast.BlockString):
        return '"""…"""'
    return flat(expr_doc(expr))


def shorten(text: str, limit: int = MAX_LABEL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- drawing

def _sorted_nodes(graph: "nx.DiGraph") -> list[str]:
    def key(node: str):
        data = graph.nodes[node]
        return (data.get("line", 0), data.get("order", 0), node)

    return sorted(graph.nodes, key=key)


def _sorted_edges(graph: "nx.DiGraph", rank: dict[str, int]) -> list[tuple[str, str, dict]]:
    return sorted(graph.edges(data=True), key=lambda e: (rank[e[0]], rank[e[1]], e[2].get("kind", "")))


def _edge_label(data: dict) -> str:
    return str(data.get("var") or data.get("label") or "")


_MERMAID_SHAPES = {"input": ('(["', '"])'), "call": ('["', '"]'), "value": ('("', '")'),
                   "branch": ('{"', '"}'), "return": ('[["', '"]]')}
_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;"}


def mermaid_escape(text: str) -> str:
    return "".join(_MERMAID_ESCAPES.get(ch, ch) for ch in " ".join(text.split()))


def _mermaid_id(node: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", node)


def to_mermaid(graph: "nx.DiGraph") -> str:
    """A Mermaid ``flowchart TD``: data edges solid, control edges dotted."""
    return "\n".join(["flowchart TD", *_mermaid_body(graph, "", "    ")]) + "\n"


def to_mermaid_flows(graphs: list["nx.DiGraph"]) -> str:
    """Several flows in one Mermaid chart, a ``subgraph`` each (node ids prefixed by the flow's name)."""
    lines = ["flowchart TD"]
    for graph in graphs:
        name = graph.graph.get("name", "flow")
        lines.append(f'    subgraph flow_{_mermaid_id(name)}["flow {mermaid_escape(name)}"]')
        lines.extend(_mermaid_body(graph, _mermaid_id(name) + "__", "        "))
        lines.append("    end")
    return "\n".join(lines) + "\n"


def _mermaid_body(graph: "nx.DiGraph", prefix: str, indent: str) -> list[str]:
    nodes = _sorted_nodes(graph)
    rank = {n: i for i, n in enumerate(nodes)}
    lines = []
    for node in nodes:
        data = graph.nodes[node]
        opening, closing = _MERMAID_SHAPES.get(data.get("kind"), ('["', '"]'))
        lines.append(f"{indent}{prefix}{_mermaid_id(node)}{opening}"
                     f"{mermaid_escape(str(data.get('label', node)))}{closing}")
    for source, target, data in _sorted_edges(graph, rank):
        arrow = "-.->" if data.get("kind") == "control" else "-->"
        label = mermaid_escape(_edge_label(data))
        middle = f"{arrow}|{label}|" if label else arrow
        lines.append(f"{indent}{prefix}{_mermaid_id(source)} {middle} {prefix}{_mermaid_id(target)}")
    return lines


_DOT_SHAPES = {"input": "oval", "call": "box", "value": "box", "branch": "diamond", "return": "doubleoctagon"}


def dot_quote(text: str) -> str:
    text = " ".join(str(text).split())
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: "nx.DiGraph") -> str:
    """A Graphviz ``digraph``: data edges solid, control edges dashed."""
    return "\n".join([f"digraph {dot_quote(graph.graph.get('name', 'flow'))} {{", *_DOT_DEFAULTS,
                      *_dot_body(graph, "", "    "), "}"]) + "\n"


def to_dot_flows(graphs: list["nx.DiGraph"]) -> str:
    """Several flows in one Graphviz graph, a ``cluster_`` subgraph each (node ids prefixed by the flow's name)."""
    lines = ['digraph "flows" {', *_DOT_DEFAULTS]
    for graph in graphs:
        name = graph.graph.get("name", "flow")
        lines += [f"    subgraph {dot_quote('cluster_' + name)} {{", f"        label={dot_quote('flow ' + name)};",
                  *_dot_body(graph, name + ":", "        "), "    }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


_DOT_DEFAULTS = ('    node [fontname="Helvetica"];', '    edge [fontname="Helvetica"];')


def _dot_body(graph: "nx.DiGraph", prefix: str, indent: str) -> list[str]:
    nodes = _sorted_nodes(graph)
    rank = {n: i for i, n in enumerate(nodes)}
    lines = []
    for node in nodes:
        data = graph.nodes[node]
        attrs = [f"label={dot_quote(data.get('label', node))}", f"shape={_DOT_SHAPES.get(data.get('kind'), 'box')}"]
        if data.get("kind") == "value":
            attrs.append('style="rounded"')
        lines.append(f"{indent}{dot_quote(prefix + node)} [{', '.join(attrs)}];")
    for source, target, data in _sorted_edges(graph, rank):
        attrs = []
        label = _edge_label(data)
        if label:
            attrs.append(f"label={dot_quote(label)}")
        if data.get("kind") == "control":
            attrs.append("style=dashed")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"{indent}{dot_quote(prefix + source)} -> {dot_quote(prefix + target)}{suffix};")
    return lines


__all__ = ["build_flow_graph", "to_mermaid", "to_mermaid_flows", "to_dot", "to_dot_flows", "expr_text",
           "expression_calls", "expression_reads", "CALLABLE_KINDS"]
