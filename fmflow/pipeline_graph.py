"""The graph of a pipeline for `fmflow graph`: its source, its steps as a chain, its sink.

Nodes: ``source`` (kind ``input``), ``step1`` … ``stepN`` (kind ``call`` when
the step calls a declaration, else ``value``) and ``sink`` (kind ``return``),
with the attributes the flow graph's drawing functions read (``label``,
``line``, ``order``). Each edge carries the type of the records that pass
along it (``label``), as the checker found it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from . import ast
from .checks.expressions import CALLABLE_KINDS
from .compiler import expr_text, expression_calls, shorten
from .pipeline_steps import read_pipeline

if TYPE_CHECKING:
    import networkx as nx


def build_pipeline_graph(decl: ast.PipelineDecl, declarations: Mapping[str, ast.Decl],
                         types: Mapping[int, object]) -> "nx.DiGraph":
    """The chain of ``decl``; ``types`` maps id(part call) → the record type after it (ctx.expr_types)."""
    import networkx as nx

    spec = read_pipeline(decl)
    graph = nx.DiGraph(name=decl.name)
    chain = [("source", "input", spec.source)]
    for step in spec.steps:
        calls = [c for value in step.args.values() for c in expression_calls(value, declarations)]
        kind = "call" if any(k in CALLABLE_KINDS for _, k in calls) or _maps_callable(step, declarations) \
            else "value"
        chain.append((f"step{step.index + 1}", kind, step))
    chain.append(("sink", "return", spec.sink))
    previous: tuple[str, object] | None = None
    for node, kind, part in chain:
        if part is None:
            continue
        graph.add_node(node, kind=kind, label=shorten(expr_text(part.call)), line=part.span.line,
                       order=len(graph), stmt=part.call)
        if previous is not None:
            record = types.get(id(previous[1].call))
            graph.add_edge(previous[0], node, kind="data", label=str(record) if record is not None else "")
        previous = (node, part)
    return graph


def _maps_callable(step, declarations: Mapping[str, ast.Decl]) -> bool:
    """``map(f)`` / ``expand(f)`` with a bare name: the step calls ``f``."""
    value = next(iter(step.args.values()), None)
    decl = declarations.get(value.id) if isinstance(value, ast.Name) and value.id != "record" else None
    return decl is not None and decl.kind in CALLABLE_KINDS
