"""The dataflow graph of a flow (fmflow.compiler): nodes, edges, drawing."""

from __future__ import annotations

import re
import textwrap

import networkx as nx
import pytest

from fmflow import ast
from fmflow.compiler import (build_flow_graph, expr_text, to_dot, to_dot_flows,
                             to_mermaid, to_mermaid_flows)
from fmflow.parser import parse_text

PRELUDE = """
model fast { provider: "openai", name: "gpt-4o-mini" }
type Answer { text: str, citations: list[str], confidence: float }
enum Category { billing, bug, other }
prompt answer@2 (question: str, docs: list[Doc]) -> Answer {
  model: fast
  template: \"\"\"{{ question }} {{ docs }}\"\"\"
}
prompt summarize(text: str) -> str { model: fast, template: \"\"\"{{ text }}\"\"\" }
prompt classify(text: str) -> Category { model: fast, template: \"\"\"{{ text }}\"\"\" }
prompt combine(a: str, b: str) -> str { model: fast, template: \"\"\"{{ a }} {{ b }}\"\"\" }
retriever kb { collection: "docs", k: 4 }
tool word_count(text: str) -> int = python("my_tools:word_count")
filter redact_pii(text: str) -> str = python("std_filters:redact_pii")
filter truncate(text: str, limit: int) -> str = python("std_filters:truncate")
agent researcher(question: str) -> str { model: fast, template: \"\"\"{{ question }}\"\"\" }
"""

DOCS_QA = """
flow docs_qa(question: str) -> Answer {
  docs = kb(question)
  if len(docs) == 0 {
    return Answer(text: "I don't know.", citations: [], confidence: 0.0)
  }
  draft = answer(question: question, docs: docs)
  return draft
}
"""


def parse_module(source: str) -> ast.Module:
    module, diagnostics = parse_text(PRELUDE + textwrap.dedent(source), "test.fmflow")
    assert diagnostics == []
    return module


def graph_of(source: str, flow: str | None = None) -> nx.DiGraph:
    module = parse_module(source)
    declarations = {d.name: d for d in module.decls}
    flows = [d for d in module.decls if isinstance(d, ast.FlowDecl)]
    target = flows[-1] if flow is None else declarations[flow]
    graph = build_flow_graph(target, declarations)
    assert nx.is_directed_acyclic_graph(graph)
    return graph


def data_edges(graph: nx.DiGraph) -> set[tuple[str, str, str]]:
    return {(u, v, d["var"]) for u, v, d in graph.edges(data=True) if d["kind"] == "data"}


def control_edges(graph: nx.DiGraph) -> set[tuple[str, str, str]]:
    return {(u, v, d["label"]) for u, v, d in graph.edges(data=True) if d["kind"] == "control"}


def node_by_label(graph: nx.DiGraph, label: str) -> str:
    matches = [n for n, d in graph.nodes(data=True) if d["label"] == label]
    assert len(matches) == 1, (label, [d["label"] for _, d in graph.nodes(data=True)])
    return matches[0]


# ------------------------------------------------------------------ docs_qa

def test_docs_qa_nodes():
    graph = graph_of(DOCS_QA)
    summary = {n: (d["kind"], d["label"], d["defines"]) for n, d in graph.nodes(data=True)}
    assert summary == {
        "input:question": ("input", "question: str", "question"),
        "n1": ("call", "docs = kb(question)", "docs"),
        "n2": ("branch", "if len(docs) == 0", None),
        "n3": ("return", 'return Answer(text: "I don\'t know.", citations: [], confidence: 0.0)', None),
        "n4": ("call", "draft = answer(question: question, docs: docs)", "draft"),
        "n5": ("return", "return draft", None),
    }
    assert graph.nodes["n1"]["calls"] == [("kb", "retriever")]
    assert graph.nodes["n2"]["calls"] == [("len", "builtin")]
    assert graph.nodes["n3"]["calls"] == [("Answer", "type")]
    assert graph.nodes["n4"]["calls"] == [("answer", "prompt")]
    assert isinstance(graph.nodes["n4"]["stmt"], ast.Assign)
    assert isinstance(graph.nodes["n2"]["stmt"], ast.Branch)
    assert isinstance(graph.nodes["input:question"]["stmt"], ast.Param)
    lines = [graph.nodes[n]["line"] for n in ("input:question", "n1", "n2", "n3", "n4", "n5")]
    assert lines == sorted(lines) and len(set(lines)) == 6


def test_docs_qa_edges():
    graph = graph_of(DOCS_QA)
    assert data_edges(graph) == {
        ("input:question", "n1", "question"),
        ("input:question", "n4", "question"),
        ("n1", "n2", "docs"),
        ("n1", "n4", "docs"),
        ("n4", "n5", "draft"),
    }
    # The prompt waits for the early return's outcome: an edge shows it; `return draft` waits through it.
    assert control_edges(graph) == {("n2", "n3", "then"), ("n2", "n4", "else")}


def test_docs_qa_gates_statements_after_an_early_return():
    graph = graph_of(DOCS_QA)
    gates = {n: d["gate"] for n, d in graph.nodes(data=True)}
    assert gates == {"input:question": None, "n1": None, "n2": None, "n3": (("n2", "then"),),
                     "n4": (("n2", "else"),), "n5": (("n2", "else"),)}


def test_language_md_example_flow():
    """The whole example of LANGUAGE.md §2 parses and gives the docs_qa graph."""
    with open("/work/shared/LANGUAGE.md", encoding="utf-8") as handle:
        text = handle.read()
    source = re.search(r"```fmflow\n(.*?)```", text, re.S)
    if source is None:  # pragma: no cover - the contract moved
        pytest.skip("LANGUAGE.md example not found")
    module, diagnostics = parse_text(source.group(1), "example.fmflow")
    assert diagnostics == []
    declarations = {d.name: d for d in module.decls}
    graph = build_flow_graph(declarations["docs_qa"], declarations)
    assert graph.nodes["n4"]["calls"] == [("answer", "prompt")]
    assert len(graph) == 6 and graph.number_of_edges() == 7


def test_every_statement_after_a_returning_if_hangs_from_its_outcome():
    """A statement that reads nothing (or only inputs) still waits for the `if` before it: it has an edge."""
    graph = graph_of("""
        flow early(q: str) -> str {
          if len(q) == 0 {
            return "empty"
          }
          note = summarize("a constant text")
          tail = combine(note, q)
          return tail
        }
    """)
    note, tail = node_by_label(graph, 'note = summarize("a constant text")'), node_by_label(graph, "tail = combine(note, q)")
    assert ("n1", note, "else") in control_edges(graph)
    assert ("n1", tail, "else") not in control_edges(graph)  # it waits through `note`
    statements = [n for n, d in graph.nodes(data=True) if d["kind"] != "input"]
    assert all(graph.in_degree(n) > 0 for n in statements if graph.nodes[n]["gate"])


# -------------------------------------------------------------- dataflow

def test_independent_calls_have_no_edge_between_them():
    graph = graph_of("""
        flow two(q: str) -> str {
          a = summarize(q)
          b = researcher(question: q)
          n = word_count(q)
          c = combine(a: a, b: b)
          return c
        }
    """)
    a, b, n = (node_by_label(graph, lbl) for lbl in
               ("a = summarize(q)", "b = researcher(question: q)", "n = word_count(q)"))
    c = node_by_label(graph, "c = combine(a: a, b: b)")
    for x, y in [(a, b), (b, a), (a, n), (n, a), (b, n), (n, b)]:
        assert not graph.has_edge(x, y)
        assert not nx.has_path(graph, x, y)
    assert {(u, v) for u, v, _ in data_edges(graph)} == {
        ("input:q", a), ("input:q", b), ("input:q", n), (a, c), (b, c), (c, "n5")}
    assert [graph.nodes[x]["calls"][0][1] for x in (a, b, n)] == ["prompt", "agent", "tool"]


def test_value_nodes_and_builtins():
    graph = graph_of("""
        flow shout(q: str) -> str {
          loud = upper(q)
          size = len(loud) + 1
          return loud
        }
    """)
    assert graph.nodes["n1"]["kind"] == "value"
    assert graph.nodes["n1"]["calls"] == [("upper", "builtin")]
    assert graph.nodes["n2"]["kind"] == "value"
    assert data_edges(graph) == {("input:q", "n1", "q"), ("n1", "n2", "loud"), ("n1", "n3", "loud")}


def test_if_elif_else_control_edges():
    graph = graph_of("""
        flow route(q: str) -> str {
          c = classify(q)
          if c == Category.billing {
            a = summarize(q)
            b = summarize(a)
            return b
          } elif c == Category.bug {
            return summarize(q)
          } else {
            note = "other"
            return note
          }
        }
    """)
    labels = {n: d["label"] for n, d in graph.nodes(data=True)}
    assert labels["n2"] == "if c == Category.billing"
    assert labels["n6"] == "elif c == Category.bug"
    assert [graph.nodes[n]["kind"] for n in ("n2", "n6")] == ["branch", "branch"]
    assert control_edges(graph) == {
        ("n2", "n3", "then"), ("n2", "n4", "then"), ("n2", "n5", "then"),   # every statement of the arm
        ("n2", "n6", "else"),                                                # elif through else
        ("n6", "n7", "then"),
        ("n6", "n8", "else"), ("n6", "n9", "else"),
    }
    assert ("n1", "n2", "c") in data_edges(graph) and ("n1", "n6", "c") in data_edges(graph)
    assert ("n3", "n4", "a") in data_edges(graph)
    assert graph.nodes["n6"]["gate"] == (("n2", "else"),)


def test_nested_if_controls_only_its_own_arm():
    graph = graph_of("""
        flow nested(q: str) -> str {
          if len(q) > 3 {
            if len(q) > 100 {
              return "long"
            }
            s = summarize(q)
            return s
          }
          return q
        }
    """)
    assert control_edges(graph) == {("n1", "n2", "then"), ("n2", "n3", "then"),
                                     ("n1", "n4", "then"), ("n1", "n5", "then"),
                                     ("n2", "n4", "else"), ("n1", "n6", "else")}
    assert graph.nodes["n4"]["gate"] == (("n2", "else"),)
    assert graph.nodes["n6"]["gate"] == (("n1", "else"),)


def test_name_resolution_follows_the_path():
    graph = graph_of("""
        flow scoped(q: str) -> str {
          if len(q) > 3 {
            t = summarize(q)
            u = summarize(t)
            return u
          } else {
            t = q
            return t
          }
        }
    """)
    t_then = node_by_label(graph, "t = summarize(q)")
    t_else = node_by_label(graph, "t = q")
    u = node_by_label(graph, "u = summarize(t)")
    ret_t = node_by_label(graph, "return t")
    assert set(graph.predecessors(u)) == {t_then, "n1"}
    assert {(s, v) for s, _, v in data_edges(graph) if _ == ret_t} == {(t_else, "t")}


def test_variable_defined_in_both_branches():
    graph = graph_of("""
        flow both(q: str) -> str {
          if len(q) > 10 {
            s = summarize(q)
          } elif len(q) > 5 {
            s = q | truncate(5)
          } else {
            s = q
          }
          out = combine(a: s, b: q)
          return out
        }
    """)
    out = node_by_label(graph, "out = combine(a: s, b: q)")
    sources = {u for u, _, var in data_edges(graph) if _ == out and var == "s"}
    assert sources == {node_by_label(graph, "s = summarize(q)"),
                       node_by_label(graph, "s = q | truncate(5)"),
                       node_by_label(graph, "s = q")}
    assert graph.nodes[out]["gate"] is None  # every arm falls through


def test_variable_defined_in_one_branch_keeps_the_earlier_definition():
    graph = graph_of("""
        flow maybe(q: str) -> str {
          s = q
          if len(q) > 10 {
            s = summarize(q)
          }
          return s
        }
    """)
    ret = node_by_label(graph, "return s")
    assert {u for u, v, _ in data_edges(graph) if v == ret} == {"n1", "n3"}


def test_comprehension_over_a_call():
    graph = graph_of("""
        flow digest(q: str) -> list[str] {
          d = "shadowed"
          docs = kb(q)
          parts = [summarize(d.text) for d in docs if d.score > 0.5]
          return parts
        }
    """)
    parts = node_by_label(graph, "parts = [summarize(d.text) for d in docs if d.score > 0.5]")
    assert graph.nodes[parts]["kind"] == "call"
    assert graph.nodes[parts]["calls"] == [("summarize", "prompt")]
    incoming = {(u, d["var"]) for u, _, d in graph.in_edges(parts, data=True)}
    assert incoming == {(node_by_label(graph, "docs = kb(q)"), "docs")}  # loop variable d is not a graph variable


def test_pipe_filters_are_listed_in_calls():
    graph = graph_of("""
        flow clean(q: str) -> str {
          safe = q | redact_pii | truncate(800)
          short = [strip(x) for x in split(q, " ")] | join_words
          return safe
        }
    """)
    assert graph.nodes["n1"]["calls"] == [("redact_pii", "filter"), ("truncate", "filter")]
    assert graph.nodes["n1"]["kind"] == "call"
    assert graph.nodes["n2"]["calls"] == [("strip", "builtin"), ("split", "builtin"), ("join_words", "builtin")]
    assert graph.nodes["n2"]["kind"] == "value"


def test_defaults_label_their_inputs_and_read_the_inputs_before_them():
    graph = graph_of("""
        tool stamp(x: str) -> str = python("m:stamp")
        flow refine(draft: str, round: int = 0, width: int = len(draft) * 2, tag: str = stamp(draft)) -> str {
          return draft
        }
    """)
    labels = {n: d["label"] for n, d in graph.nodes(data=True) if d["kind"] == "input"}
    assert labels == {"input:draft": "draft: str", "input:round": "round: int = 0",
                      "input:width": "width: int = len(draft) * 2", "input:tag": "tag: str = stamp(draft)"}
    assert graph.nodes["input:tag"]["calls"] == [("stamp", "tool")]
    assert data_edges(graph) == {("input:draft", "input:width", "draft"), ("input:draft", "input:tag", "draft"),
                                 ("input:draft", "n1", "draft")}


def test_calls_to_flows_are_call_nodes():
    module = parse_module("""
        flow leaf(q: str) -> str {
          return summarize(q)
        }
        flow ping(q: str) -> str {
          x = leaf(q)
          return x
        }
    """)
    declarations = {d.name: d for d in module.decls}
    graph = build_flow_graph(declarations["ping"], declarations)
    assert graph.nodes["n1"]["calls"] == [("leaf", "flow")] and graph.nodes["n1"]["kind"] == "call"


# ---------------------------------------------------------------- labels

@pytest.mark.parametrize("text", [
    "(a + b) * c", "a - (b - c)", "-(a + b)", "not (a and b)", "not a and b", "a or b and c",
    "(a or b) and c", "x if c else y", "(x if c else y) + 1", "(a | f) + 1", "a + b | f(1)",
    "[d.text for d in docs if d.score > 0.5]", "{ lang: \"en\", \"k k\": 1 }", "answer@2(q)",
    "xs[0].name", "a not in b", "(a == b) == c",
])
def test_labels_print_expressions_back(text):
    module = parse_module(f"flow f(a: int) -> int {{\n  r = {text}\n  return r\n}}\n")
    flow = module.decls[-1]
    printed = expr_text(flow.body[0].value)
    reparsed = parse_module(f"flow f(a: int) -> int {{\n  r = {printed}\n  return r\n}}\n").decls[-1]
    assert reparsed.body[0].value == flow.body[0].value
    assert printed.replace(" ", "") == text.replace(" ", "")


# --------------------------------------------------------------- drawing

ROUTE = """
    flow route(q: str, mode: str) -> str {
      c = classify(q)
      if c == Category.billing {
        a = summarize(q) | truncate(10)
        return a
      } elif mode == "quote \\"this\\"" {
        return "<b> & #1"
      } else {
        return researcher(question: q)
      }
    }
"""

MERMAID_NODE = re.compile(
    r'^    (?P<id>[A-Za-z0-9_]+)(?:\(\["(?P<input>[^"]*)"\]\)|\["(?P<call>[^"]*)"\]|\("(?P<value>[^"]*)"\)'
    r'|\{"(?P<branch>[^"]*)"\}|\[\["(?P<ret>[^"]*)"\]\])$')
MERMAID_EDGE = re.compile(r"^    ([A-Za-z0-9_]+) (-->|-\.->)(?:\|([A-Za-z0-9_]+)\|)? ([A-Za-z0-9_]+)$")


def test_mermaid_is_well_formed():
    graph = graph_of(ROUTE)
    text = to_mermaid(graph)
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "flowchart TD"
    defined: dict[str, str] = {}
    edges = []
    for line in lines[1:]:
        node = MERMAID_NODE.match(line)
        if node:
            shape = next(k for k in ("input", "call", "value", "branch", "ret") if node.group(k) is not None)
            defined[node.group("id")] = shape
            continue
        edge = MERMAID_EDGE.match(line)
        assert edge, line
        edges.append(edge.groups())
    assert len(defined) == len(graph) and len(edges) == graph.number_of_edges()
    assert all(src in defined and dst in defined for src, _, _, dst in edges)
    assert defined["input_q"] == "input" and defined["n1"] == "call"
    assert defined["n2"] == "branch" and defined["n4"] == "ret"
    assert ("n2", "-.->", "then", "n3") in edges and ("n1", "-->", "c", "n2") in edges
    assert "#quot;" in text and "#lt;b#gt; #amp; #35;1" in text


DOT_STRING = r'"(?:[^"\\]|\\.)*"'
DOT_NODE = re.compile(rf"^    ({DOT_STRING}) \[label=({DOT_STRING}), shape=[a-z]+(?:, style=\"rounded\")?\];$")
DOT_EDGE = re.compile(rf"^    ({DOT_STRING}) -> ({DOT_STRING})(?: \[label=({DOT_STRING})(?:, style=dashed)?\])?;$")


def test_dot_is_well_formed():
    graph = graph_of(ROUTE)
    text = to_dot(graph)
    lines = text.rstrip("\n").split("\n")
    assert re.fullmatch(rf"digraph {DOT_STRING} \{{", lines[0]) and lines[0] == 'digraph "route" {'
    assert lines[-1] == "}"
    nodes, edges = set(), []
    for line in lines[1:-1]:
        if line.startswith(("    node ", "    edge ")):
            continue
        node = DOT_NODE.match(line)
        if node:
            nodes.add(node.group(1))
            continue
        edge = DOT_EDGE.match(line)
        assert edge, line
        edges.append(edge.groups())
    assert len(nodes) == len(graph) and len(edges) == graph.number_of_edges()
    assert all(src in nodes and dst in nodes for src, dst, _ in edges)
    assert '"input:q"' in nodes
    assert r'\"quote \\\"this\\\"\"' in text  # the label quotes the source's escaped string


def test_drawings_are_deterministic():
    first = graph_of(ROUTE)
    shuffled = nx.DiGraph(**first.graph)
    shuffled.add_nodes_from(reversed(list(first.nodes(data=True))))
    shuffled.add_edges_from(reversed(list(first.edges(data=True))))
    assert to_mermaid(first) == to_mermaid(shuffled) == to_mermaid(graph_of(ROUTE))
    assert to_dot(first) == to_dot(shuffled) == to_dot(graph_of(ROUTE))
    order = [line.split("[")[0].strip() for line in to_dot(first).splitlines()[3:9]]
    assert order == ['"input:q"', '"input:mode"', '"n1"', '"n2"', '"n3"', '"n4"']


def test_graphs_are_acyclic_and_edges_point_forward():
    for source in (DOCS_QA, ROUTE):
        graph = graph_of(source)
        for u, v in graph.edges:
            assert graph.nodes[u]["order"] < graph.nodes[v]["order"]


def test_several_flows_are_drawn_as_subgraphs():
    module = parse_module(DOCS_QA + ROUTE)
    declarations = {d.name: d for d in module.decls}
    graphs = [build_flow_graph(d, declarations) for d in module.decls if isinstance(d, ast.FlowDecl)]
    mermaid = to_mermaid_flows(graphs).splitlines()
    assert mermaid[0] == "flowchart TD"
    starts = [i for i, line in enumerate(mermaid) if line.startswith("    subgraph ")]
    assert [mermaid[i] for i in starts] == ['    subgraph flow_docs_qa["flow docs_qa"]', '    subgraph flow_route["flow route"]']
    assert mermaid.count("    end") == 2
    inner = [line for line in mermaid if line.startswith("        ")]
    assert len(inner) == sum(len(g) + g.number_of_edges() for g in graphs)
    assert "        docs_qa__n2 -.->|else| docs_qa__n4" in inner and "        route__input_q([\"q: str\"])" in inner
    dot = to_dot_flows(graphs)
    assert dot.startswith('digraph "flows" {\n') and dot.rstrip().endswith("}")
    assert '    subgraph "cluster_docs_qa" {' in dot and '        label="flow route";' in dot
    assert '        "docs_qa:n2" -> "docs_qa:n4" [label="else", style=dashed];' in dot
