"""Deep nesting never crashes a phase (docs/language.md, "Nesting").

Nesting up to MAX_NESTING levels works in every phase (parse, check, fmt,
graph, run); deeper is one E001 "nested too deeply" at the first place that
goes deeper, from the parser, so no later phase sees it. A flat chain of one
operator (`a + b + …`) is not nesting: ten thousand terms work everywhere.
Types nest up to MAX_TYPE_DEPTH levels, through brackets and declared types.
"""

from __future__ import annotations

import pytest

import fmflow
from fmflow import ast
from fmflow.api import check, load_program
from fmflow.compiler import build_flow_graph, to_mermaid
from fmflow.errors import FmflowCheckError, FmflowSyntaxError
from fmflow.formatter import format_text
from fmflow.nesting import MAX_NESTING, MAX_TYPE_DEPTH
from fmflow.parser import parse_text

CHAIN = 10_000
LONG = 3_000  # well past Python's recursion limit, and quicker to run than CHAIN
TOO_DEEP = f"nested too deeply: more than {MAX_NESTING} levels of brackets, operators or ifs"


@pytest.fixture(autouse=True)
def strict(monkeypatch, tmp_path):
    monkeypatch.setenv("FMFLOW_STRICT", "1")  # a crashing checker pass raises instead of reporting
    monkeypatch.chdir(tmp_path)


def flow_text(expr: str, returns: str = "int", params: str = "x: int") -> str:
    return f"flow f({params}) -> {returns} {{\n  return {expr}\n}}\n"


def nested_ifs(levels: int) -> str:
    body = "return x"
    for _ in range(levels):
        body = f"if x > 0 {{\n{body}\n}}"
    return f"flow f(x: int) -> int {{\n{body}\nreturn x\n}}\n"


# kind: (text n levels deep, the input, the result at n levels, (line, col) of level n when it is too deep)
DEEP = {
    "brackets": (lambda n: flow_text("[" * n + "x" + "]" * n, "json"), 7, lambda n: _listed(7, n),
                 lambda n: (2, 9 + n)),
    "not": (lambda n: flow_text("not " * n + "x", "bool"), 1, lambda n: n % 2 == 0, lambda n: (2, 10 + 4 * (n - 1))),
    "minus": (lambda n: flow_text("-" * n + "x"), 3, lambda n: 3 if n % 2 == 0 else -3, lambda n: (2, 9 + n)),
    "right operands": (lambda n: flow_text("x + (" * n + "x" + ")" * n), 2, lambda n: 2 * (n + 1),
                       lambda n: (2, 10 + 5 * (n - 1))),
    "calls": (lambda n: flow_text("max(" * n + "x" + ", 1)" * n), 5, lambda n: 5, lambda n: (2, 10 + 4 * (n - 1))),
    # The condition of the innermost `a if c else b` is one level below it.
    "conditionals": (lambda n: flow_text("x if x > 0 else " * (n - 1) + "x"), 4, lambda n: 4,
                     lambda n: (2, 10 + 16 * (n - 2) + 5)),
    "dicts": (lambda n: flow_text("{ a: " * n + "x" + " }" * n, "json"), 6, lambda n: _dicted(6, n),
              lambda n: (2, 10 + 5 * (n - 1))),
    # Likewise the condition of the innermost `if`.
    "ifs": (lambda n: nested_ifs(n - 1), 8, lambda n: 8, lambda n: (n, 4)),
}


def _listed(value, n):
    for _ in range(n):
        value = [value]
    return value


def _dicted(value, n):
    for _ in range(n):
        value = {"a": value}
    return value


def write(tmp_path, text: str, name: str = "deep.fmflow"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(path, **inputs):
    return fmflow.load(path, workdir=path.parent, trace=False, cache=False).run(**inputs)


def graph_of(path) -> str:
    loader, ctx = load_program(path)
    flow = next(d for d in ctx.module.decls if isinstance(d, ast.FlowDecl))
    return to_mermaid(build_flow_graph(flow, {name: ctx.lookup(name) for name in ctx.symbols.names()}))


@pytest.mark.parametrize("kind", list(DEEP))
def test_nesting_up_to_the_limit_works_in_every_phase(tmp_path, kind):
    text_of, given, expected, _where = DEEP[kind]
    text = text_of(MAX_NESTING)
    path = write(tmp_path, text)
    assert [d for d in check(path) if d.is_error] == []
    formatted = format_text(text)
    assert formatted is not None and format_text(formatted) == formatted
    assert "flowchart" in graph_of(path)
    assert run(path, x=given) == expected(MAX_NESTING)


@pytest.mark.parametrize("kind, levels", [*((k, MAX_NESTING + 1) for k in DEEP), *((k, LONG) for k in DEEP),
                                          ("brackets", CHAIN)])
def test_nesting_past_the_limit_is_one_e001_where_it_goes_too_deep(tmp_path, kind, levels):
    text_of, _given, _expected, where = DEEP[kind]
    text = text_of(levels)
    path = write(tmp_path, text)
    diagnostics = check(path)
    assert [(d.code, d.message) for d in diagnostics] == [("E001", TOO_DEEP)]
    assert (diagnostics[0].span.line, diagnostics[0].span.col) == where(MAX_NESTING + 1)
    with pytest.raises(FmflowSyntaxError):
        fmflow.parse(text)
    with pytest.raises(FmflowCheckError):
        fmflow.load(path)
    assert format_text(text) is None


def test_parentheses_alone_add_no_level(tmp_path):
    path = write(tmp_path, flow_text("(" * CHAIN + "x" + ")" * CHAIN))
    assert check(path) == []
    assert format_text(path.read_text(encoding="utf-8")) == flow_text("x")
    assert run(path, x=4) == 4


# ------------------------------------------------------------------ chains

CHAINS = {
    "+": (flow_text(" + ".join(["x"] * CHAIN)), {"x": 2}, 2 * CHAIN),
    "-": (flow_text(" - ".join(["x"] * LONG)), {"x": 1}, 2 - LONG),
    "*": (flow_text(" * ".join(["x"] * LONG)), {"x": 1}, 1),
    "and": (flow_text(" and ".join(["x > 0"] * LONG), "bool"), {"x": 1}, True),
    "or": (flow_text(" or ".join(["x > 0"] * LONG), "bool"), {"x": 0}, False),
    "|": (flow_text("x" + " | upper" * LONG, "str", "x: str"), {"x": "a"}, "A"),
    "str +": (flow_text(" + ".join(['"a"'] * LONG), "str", "x: str"), {"x": ""}, "a" * LONG),
}


@pytest.mark.parametrize("op", list(CHAINS))
def test_a_long_chain_works_in_every_phase(tmp_path, op):
    text, inputs, expected = CHAINS[op]
    path = write(tmp_path, text)
    assert check(path) == []
    formatted = format_text(text)
    assert formatted is not None and format_text(formatted) == formatted
    module, diagnostics = parse_text(formatted)
    assert diagnostics == [] and module.decls[0].name == "f"
    assert "flowchart" in graph_of(path)
    assert run(path, **inputs) == expected


def test_chains_keep_their_meaning(tmp_path):
    """Left to right, short-circuit for and/or; the checker types every link."""
    path = write(tmp_path, flow_text("10 - 4 - 3 + 2 * 3 * 2 % 5", "int"))
    assert run(path, x=0) == 10 - 4 - 3 + 2 * 3 * 2 % 5
    path = write(tmp_path, flow_text("x == 0 or 10 / x > 1 or 1 / 0 > 1", "bool"))
    assert run(path, x=0) is True  # 10 / x and 1 / 0 never run
    path = write(tmp_path, flow_text("x != 0 and 10 / x > 1 and 1 / 0 > 1", "bool"))
    assert run(path, x=0) is False
    bad = write(tmp_path, flow_text(" + ".join(["x"] * 5000) + ' + "s"', "int"))
    assert [(d.code, d.span.col) for d in check(bad)] == [("E201", 10)]


def test_a_lock_covers_a_template_written_as_a_long_chain(tmp_path):
    from fmflow.lockfile import write_lock

    template = " + ".join(['"a"'] * LONG)
    text = ('model m { provider: "builtin", name: "echo" }\n'
            f'prompt p(x: str) -> str {{\n  model: m\n  template: {template}\n}}\n'
            'flow f(x: str) -> str {\n  return p(x)\n}\n')
    path = write(tmp_path, text)
    _lock, hashes = write_lock(load_program(path)[1])
    assert list(hashes) == ["p@1"]
    assert check(path) == []
    path.write_text(text.replace('"a" + "a"', '"a" + "b"', 1), encoding="utf-8")
    assert [d.code for d in check(path)] == ["E401"]


# ------------------------------------------------------------------ types

def _type_chain(levels: int) -> str:
    """Declared types, each holding the next, `levels` levels in all (the last holds an int)."""
    text = "".join(f"type T{i} {{ a: T{i + 1} }}\n" for i in range(levels - 2))
    return text + f"type T{levels - 2} {{ a: int }}\n" + "flow f(x: T0) -> T0 {\n  return x\n}\n"


def _nested_value(levels: int):
    value = 1
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_types_up_to_their_limit_run(tmp_path):
    path = write(tmp_path, _type_chain(MAX_TYPE_DEPTH))
    assert check(path) == []
    result = run(path, x=_nested_value(MAX_TYPE_DEPTH))
    assert result.model_dump() == _nested_value(MAX_TYPE_DEPTH)
    written = write(tmp_path, flow_text("1", "int", "x: " + "list[" * (MAX_TYPE_DEPTH - 1) + "int"
                                        + "]" * (MAX_TYPE_DEPTH - 1)), "written.fmflow")
    assert check(written) == []
    assert run(written, x=_listed(1, MAX_TYPE_DEPTH - 1)) == 1


def test_types_past_their_limit_are_one_e001_at_the_outermost(tmp_path):
    path = write(tmp_path, _type_chain(LONG))
    diagnostics = check(path)
    assert [(d.code, d.span.line, d.span.col) for d in diagnostics] == [("E001", 1, 6)]
    assert diagnostics[0].message == (f"type 'T0' is nested too deeply: {LONG} levels of types inside types, "
                                      f"more than {MAX_TYPE_DEPTH}")
    written = write(tmp_path, flow_text("1", "int", "x: " + "list[" * MAX_TYPE_DEPTH + "int"
                                        + "]" * MAX_TYPE_DEPTH), "written.fmflow")
    (d,) = check(written)
    assert (d.code, d.span.line, d.span.col) == ("E001", 1, 11)
    recursive = write(tmp_path, "type Node { next: Node?, items: list[Node] }\n"
                                "flow f(x: Node) -> Node {\n  return x\n}\n", "recursive.fmflow")
    assert check(recursive) == []


# --------------------------------------------------------------- templates

def _prompt_with(template: str) -> str:
    return ('model m { provider: "replay", options: { responses: [{ text: "rendered" }] } }\n'
            f'prompt p(items: list[str]) -> str {{\n  model: m\n  template: """{template}"""\n}}\n'
            'flow f(items: list[str]) -> str {\n  return p(items)\n}\n')


@pytest.mark.parametrize("template", [
    "{% for a in items %}" * 21 + "x" + "{% endfor %}" * 21,   # Jinja2 compiles 20 nested blocks at most
    "{{ " + "(" * LONG + "items" + ")" * LONG + " }}",          # its parser recurses
    "{{ " + " + ".join(["items"] * 300) + " }}",               # Python's 200 nested brackets
])
def test_a_template_jinja2_cannot_compile_is_e001_at_check_time(tmp_path, template):
    path = write(tmp_path, _prompt_with(template))
    (d,) = check(path)
    assert (d.code, d.span.line) == ("E001", 4)
    assert d.message.startswith("template nested too deeply for Jinja2 (")


def test_a_template_jinja2_can_compile_checks_and_runs(tmp_path):
    path = write(tmp_path, _prompt_with("{% for a in items %}" * 19 + "{{ a }}" + "{% endfor %}" * 19))
    assert check(path) == []
    assert run(path, items=["z"]) == "rendered"  # the template rendered, the model answered
