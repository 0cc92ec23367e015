"""Round trip of the canonical formatter (``fmflow fmt``).

Over every corpus, identity, example and stdlib file: the text parses clean,
formatting is idempotent, the formatted text parses to an equal AST, every
comment and every block string survives byte for byte, and identity files
are fixed points. Then unit tests of the tricky cases.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from fmflow import ast
from fmflow.formatter import WIDTH, format_module, format_text
from fmflow.parser import parse_text

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
CORPUS = sorted((HERE / "corpus").glob("*.fmflow"))
IDENTITY = sorted((HERE / "identity").glob("*.fmflow"))
EXAMPLES = sorted((ROOT / "examples").glob("**/*.fmflow"))
STDLIB = sorted((ROOT / "stdlib").glob("*.fmflow"))
ALL_FILES = CORPUS + IDENTITY + EXAMPLES + STDLIB


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def parse_clean(text: str, path: str = "<test>") -> ast.Module:
    module, diagnostics = parse_text(text, path)
    assert not diagnostics, "\n".join(f"{d.span.line}:{d.span.col} {d.code} {d.message}" for d in diagnostics)
    return module


def fmt(text: str) -> str:
    out = format_text(text)
    assert out is not None, "format_text reported a syntax error"
    return out


def block_raws(module: ast.Module) -> list[str]:
    return [n.raw for n in module.walk() if isinstance(n, ast.BlockString)]


def comment_texts(module: ast.Module) -> Counter:
    return Counter(c.text for c in module.comments)


def flow_of(expression: str) -> str:
    return f"flow f() -> int {{\n  return {expression}\n}}\n"


def formatted_expression(expression: str) -> str:
    """The formatted text of ``expression`` (must fit on one line)."""
    out = fmt(flow_of(expression))
    assert parse_clean(out) == parse_clean(flow_of(expression))
    line = out.splitlines()[1]
    assert line.startswith("  return ")
    return line[len("  return "):]


# ------------------------------------------------------------------ corpora

def test_corpus_sizes():
    assert len(CORPUS) >= 32
    assert len(IDENTITY) >= 10


@pytest.mark.parametrize("path", ALL_FILES, ids=_id)
def test_round_trip(path: Path):
    text = path.read_text(encoding="utf-8")
    original = parse_clean(text, str(path))
    once = fmt(text)
    assert once.endswith("\n") and not once.endswith("\n\n")
    assert fmt(once) == once, "formatting is not idempotent"
    again = parse_clean(once, str(path))
    assert again == original, "the formatted text means something else"
    assert comment_texts(again) == comment_texts(original)
    for comment in original.comments:
        assert comment.text in once
    assert block_raws(again) == block_raws(original)
    for raw in block_raws(original):
        assert raw in once


@pytest.mark.parametrize("path", CORPUS + IDENTITY, ids=_id)
def test_corpus_passes_the_checker(path: Path):
    """Corpus files are valid programs, not only valid syntax: no error, no warning."""
    api = pytest.importorskip("fmflow.api")
    diagnostics = api.check(path)
    assert not diagnostics, "\n".join(f"{d.span.line}:{d.span.col} {d.code} {d.message}" for d in diagnostics)


@pytest.mark.parametrize("path", IDENTITY, ids=_id)
def test_identity_is_fixed_point(path: Path):
    text = path.read_text(encoding="utf-8")
    assert fmt(text) == text


@pytest.mark.parametrize("path", IDENTITY, ids=_id)
def test_identity_lines_fit(path: Path):
    in_block = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.count('"""') % 2 == 1:
            in_block = not in_block
            continue
        if not in_block and '"""' not in line:
            assert len(line) <= WIDTH, line


# -------------------------------------------------------------- precedence

@pytest.mark.parametrize(
    "source, expected",
    [
        ("(a + b) * c", "(a + b) * c"),
        ("a + (b * c)", "a + b * c"),
        ("a - (b - c)", "a - (b - c)"),
        ("(a - b) - c", "a - b - c"),
        ("a / (b * c) % d", "a / (b * c) % d"),
        ("-(a + b)", "-(a + b)"),
        ("-(-a)", "--a"),
        ("(-a).b", "(-a).b"),
        ("-a.b", "-a.b"),
        ("(a + b)[0]", "(a + b)[0]"),
        ("(a + b).c", "(a + b).c"),
        ("(f)(x)", "f(x)"),
        ("(f(x))(y)", "f(x)(y)"),
        ("not (a and b)", "not (a and b)"),
        ("not (a == b)", "not a == b"),
        ("(not a) == b", "(not a) == b"),
        ("not not a", "not not a"),
        ("(a == b) == c", "(a == b) == c"),
        ("a == (b == c)", "a == (b == c)"),
        ("(a < b) != (c in d)", "(a < b) != (c in d)"),
        ("a not in (b == c)", "a not in (b == c)"),
        ("(a or b) and c", "(a or b) and c"),
        ("a or (b and c)", "a or b and c"),
        ("a or (b or c)", "a or (b or c)"),
        ("(a and b) and c", "a and b and c"),
        ("(a | f) + 1", "(a | f) + 1"),
        ("(a + b) | f", "a + b | f"),
        ("(a == b) | f", "(a == b) | f"),
        ("(a | f) == b", "a | f == b"),
        ("x | f | g(1, n: 2)", "x | f | g(1, n: 2)"),
        ("(x | f).y", "(x | f).y"),
        ("(a if b else c) if d else e", "(a if b else c) if d else e"),
        ("a if (b if c else d) else e", "a if (b if c else d) else e"),
        ("a if b else (c if d else e)", "a if b else c if d else e"),
        ("(a if b else c) + 1", "(a if b else c) + 1"),
        ("(a or b) if c else d", "a or b if c else d"),
        ("[x for x in (a if b else c)]", "[x for x in (a if b else c)]"),
        ("[x for x in xs if (a if b else c)]", "[x for x in xs if (a if b else c)]"),
        ("[(a if b else c) for x in xs]", "[a if b else c for x in xs]"),
        ("[x.y for x in xs if x.z > 0 and not x.w]", "[x.y for x in xs if x.z > 0 and not x.w]"),
        ("f(a,b,  name:c,)", "f(a, b, name: c)"),
        ("answer@2(q)", "answer@2(q)"),
    ],
)
def test_precedence(source: str, expected: str):
    assert formatted_expression(source) == expected


# --------------------------------------------------------------- literals

def test_string_escapes():
    source = r'"a\"b\\c\nd\te\u{1}f\u{e9}g\u{7F}"'
    assert formatted_expression(source) == r'"a\"b\\c\nd\te\u{01}fég\u{7F}"'


def test_numbers_durations_rates_keep_their_text():
    text = "model m {\n  a: 1e-3\n  b: 0.50\n  c: 500ms\n  d: 60/min\n  e: 1.5h\n  f: -3\n}\n"
    assert fmt(text) == text


def test_dict_keys_quoted_when_needed():
    assert formatted_expression('{"a": 1, "b c": 2, d: 3, "e-f": 4}') == '{ "a": 1, "b c": 2, d: 3, "e-f": 4 }'
    assert formatted_expression("{ model: 1, flow: 2 }") == "{ model: 1, flow: 2 }"


def test_empty_containers():
    assert formatted_expression("{ }") == "{}"
    assert formatted_expression("[ ]") == "[]"
    assert formatted_expression("f( )") == "f()"


def test_block_string_verbatim_in_any_indentation():
    text = (
        "prompt p(x: str) -> str {\n"
        "        model: m\n"
        '        template: """\n'
        "            {{ x }}\n"
        "              deeper\n"
        '        """\n'
        "}\n"
    )
    out = fmt(text)
    assert '  template: """\n            {{ x }}\n              deeper\n        """\n' in out
    assert parse_clean(out) == parse_clean(text)


# ------------------------------------------------------------ declarations

def test_headers_and_signatures():
    text = (
        "prompt   ask @ 2 ( q : str , n:int, ) -> list[ str ] ? { model: m, template: \"\"\"{{ q }}\"\"\" }\n"
        "prompt plain(q: str) -> str { model: m }\n"
        "tool t ( x : str ) -> int = python( \"m:f\" )\n"
        "filter up(x: str) -> str = python(\"m:up\")\n"
    )
    assert fmt(text) == (
        "prompt ask@2(q: str, n: int) -> list[str]? {\n"
        "  model: m\n"
        '  template: """{{ q }}"""\n'
        "}\n\n"
        "prompt plain(q: str) -> str {\n"
        "  model: m\n"
        "}\n\n"
        'tool t(x: str) -> int = python("m:f")\n\n'
        'filter up(x: str) -> str = python("m:up")\n'
    )


def test_empty_blocks_and_params():
    text = "model m {  }\ntype T {\n}\nenum E { }\nflow f( ) -> str {\n\n}\ntest t {}\n"
    assert fmt(text) == "model m {}\n\ntype T {}\n\nenum E {}\n\nflow f() -> str {}\n\ntest t {}\n"


def test_entries_one_per_line():
    text = 'model m { provider: "openai", name: "x", fallback: [a, b,], }\n'
    assert fmt(text) == 'model m {\n  provider: "openai"\n  name: "x"\n  fallback: [a, b]\n}\n'


def test_enum_one_line_or_one_member_per_line():
    assert fmt("enum E {\n  a,\n  b\n}\n") == "enum E { a, b }\n"
    members = ", ".join(f"member_number_{i}" for i in range(8))
    out = fmt(f"enum Long {{ {members} }}\n")
    assert out.splitlines()[1] == "  member_number_0"
    assert len(out.splitlines()) == 10
    assert fmt("enum E {\n  a  # first\n  b\n}\n") == "enum E {\n  a  # first\n  b\n}\n"


def test_blank_lines():
    text = (
        'import "a"\n\n\nimport "b"\nmodel m {\n\n  a: 1\n\n\n  b: 2\n  c: 3\n\n}\n\n\n\n'
        "flow f() -> int {\n  x = 1\n\n\n  return x\n}\n\n\n"
    )
    assert fmt(text) == (
        'import "a"\nimport "b"\n\nmodel m {\n  a: 1\n\n  b: 2\n  c: 3\n}\n\n'
        "flow f() -> int {\n  x = 1\n\n  return x\n}\n"
    )


def test_if_elif_else():
    text = "flow f(x: int) -> int {\n  if x > 1 { return 1 }\n  elif x > 0\n  {\n return 2 }\n  else { return 3 }\n}\n"
    assert fmt(text) == (
        "flow f(x: int) -> int {\n"
        "  if x > 1 {\n    return 1\n"
        "  } elif x > 0 {\n    return 2\n"
        "  } else {\n    return 3\n  }\n"
        "}\n"
    )


def test_empty_module():
    assert format_text("") == ""
    assert format_text("\n\n# only a comment\n\n") == "# only a comment\n"


def test_syntax_error_gives_none():
    assert format_text("model m {\n  provider: \n}\n") is None
    assert format_text("flow f() -> int {\n  return a == b == c\n}\n") is None


def test_format_module_matches_format_text():
    text = (HERE / "identity").glob("*.fmflow").__next__().read_text(encoding="utf-8")
    module, _ = parse_text(text)
    assert format_module(module) == format_text(text)


# ------------------------------------------------------------- long lines

def test_long_call_breaks_one_argument_per_line():
    args = ", ".join(f"argument_{i}: value_{i}" for i in range(6))
    text = f"flow f() -> int {{\n  result = compute({args})\n  return result\n}}\n"
    out = fmt(text)
    assert "  result = compute(\n    argument_0: value_0,\n" in out
    assert "    argument_5: value_5,\n  )\n" in out
    assert all(len(line) <= WIDTH for line in out.splitlines())


def test_long_lines_break_recursively():
    inner = ", ".join(f'"item number {i}"' for i in range(12))
    text = f"test t {{\n  flow: f\n  mock: {{ kb: [{inner}], other: 1 }}\n}}\n"
    out = fmt(text)
    assert "  mock: {\n    kb: [\n      \"item number 0\",\n" in out
    assert "    ]\n    other: 1\n  }\n" in out
    assert all(len(line) <= WIDTH for line in out.splitlines())
    assert fmt(out) == out


def test_long_pipe_chain_breaks_inside_parentheses():
    stages = " | ".join(["strip_html", "squash_whitespace", "redact_pii", "truncate(limit: 4000)"] * 2)
    text = f"flow f(docs: str) -> str {{\n  return docs | {stages}\n}}\n"
    out = fmt(text)
    assert "  return (\n    docs\n    | strip_html\n" in out
    assert parse_clean(out) == parse_clean(text)


def test_long_parameter_list_breaks():
    params = ", ".join(f"parameter_{i}: str" for i in range(6))
    out = fmt(f"flow f({params}) -> str {{\n  return parameter_0\n}}\n")
    assert out.startswith("flow f(\n  parameter_0: str,\n")
    assert ") -> str {\n" in out


# ---------------------------------------------------------------- comments

def test_trailing_comments_on_closing_braces():
    text = (
        "model m {\n  a: 1\n}  # after model\n"
        "flow f(x: bool) -> int {\n"
        "  if x {\n    return 1\n  }  # after the if arm\n"
        "  else {\n    return 2\n  }  # after the if\n"
        "}  # after the flow\n"
    )
    out = fmt(text)
    assert "}  # after model\n" in out
    assert "  } else {  # after the if arm\n" in out
    assert "  }  # after the if\n" in out
    assert out.endswith("}  # after the flow\n")
    assert fmt(out) == out


def test_comments_before_closing_braces():
    text = (
        "model m {\n  a: 1\n  # end of model\n}\n"
        "flow f(x: bool) -> int {\n"
        "  if x {\n    return 1\n    # end of arm\n  }\n"
        "  return 2\n  # end of flow\n}\n"
    )
    out = fmt(text)
    assert "  a: 1\n  # end of model\n}\n" in out
    assert "    return 1\n    # end of arm\n  }\n" in out
    assert "  return 2\n  # end of flow\n}\n" in out
    assert fmt(out) == out


def test_comment_inside_expression_moves_before_its_statement():
    text = "flow f() -> int {\n  x = g(\n    1,  # one\n    # two\n    2,\n  )\n  return x\n}\n"
    out = fmt(text)
    assert out == "flow f() -> int {\n  # one\n  # two\n  x = g(1, 2)\n  return x\n}\n"


def test_comments_on_one_line_declaration():
    text = 'model m { provider: "x", name: "y" }  # one line\n'
    assert fmt(text) == 'model m {\n  provider: "x"\n  name: "y"\n}  # one line\n'
    text = 'model m { provider: "x",  # first\n name: "y" }\n'
    assert fmt(text) == 'model m {\n  provider: "x"  # first\n  name: "y"\n}\n'


def test_comments_in_empty_blocks_and_file_end():
    text = "model m {\n  # nothing yet\n}\nflow f() -> int {  # header\n}\n# end\n"
    assert fmt(text) == "model m {\n  # nothing yet\n}\n\nflow f() -> int {  # header\n}\n# end\n"


def test_comment_between_imports_and_declarations():
    text = '# head\nimport "a"\n# about b\nimport "b"  # b\n# about m\nmodel m {}\n'
    assert fmt(text) == '# head\nimport "a"\n# about b\nimport "b"  # b\n\n# about m\nmodel m {}\n'


def test_no_comment_lost_in_odd_places():
    text = (
        "prompt p(a: str,  # a\n  b: str  # b\n) -> str {\n"
        "  check: [  # open\n    1 > 0,  # item\n  ]  # close\n"
        "}\n"
        "flow f(x: bool) -> int {\n  if x {\n    return 1\n  }\n  # between\n  elif not x {  # elif\n"
        "    return 2\n  }  # c1\n  else {  # c2\n    return 3\n  }\n}\n"
    )
    original = parse_clean(text)
    out = fmt(text)
    assert comment_texts(parse_clean(out)) == comment_texts(original)
    assert parse_clean(out) == original
    assert fmt(out) == out


# ----------------------------------------------------------- random inputs

_OPERATORS = ["+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "and", "or"]


def _random_expression(rnd: random.Random, depth: int) -> str:
    """A fully parenthesised expression: the formatter must drop only needless parentheses."""
    if depth <= 0 or rnd.random() < 0.2:
        return rnd.choice(["a", "b", "1", "2.5", '"s"', "true", "null", "30s", "x@2"])
    sub = lambda: _random_expression(rnd, depth - 1)  # noqa: E731
    shapes = [
        lambda: f"({sub()} {rnd.choice(_OPERATORS)} {sub()})",
        lambda: f"(-{sub()})",
        lambda: f"(not {sub()})",
        lambda: f"({sub()} if {sub()} else {sub()})",
        lambda: f"({sub()} | f)",
        lambda: f"({sub()} | g({sub()}, n: {sub()}))",
        lambda: f"({sub()})({sub()}, name: {sub()})",
        lambda: f"({sub()}).attr",
        lambda: f"({sub()})[{sub()}]",
        lambda: f"[{sub()} for v in {sub()} if {sub()}]",
        lambda: "[" + ", ".join(sub() for _ in range(rnd.randrange(4))) + "]",
        lambda: "{" + ", ".join(f"k{i}: {sub()}" for i in range(rnd.randrange(4))) + "}",
    ]
    return rnd.choice(shapes)()


@pytest.mark.parametrize("seed", range(300))
def test_random_expressions_round_trip(seed: int):
    rnd = random.Random(seed)
    text = flow_of(_random_expression(rnd, 5))
    out = fmt(text)
    assert parse_clean(out) == parse_clean(text)
    assert fmt(out) == out


@pytest.mark.parametrize("seed", range(100))
def test_random_comments_are_kept(seed: int):
    rnd = random.Random(seed)
    path = rnd.choice(CORPUS + IDENTITY)
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n")):
        if rnd.random() < 0.25:
            lines.append(" " * rnd.randint(0, 6) + f"# own {number}")
        if rnd.random() < 0.1:
            lines.append("")
        if rnd.random() < 0.4 and line.strip():
            line += " " * rnd.randint(0, 3) + f"# trailing {number}"
        lines.append(line)
    assert_kept(parse_clean("\n".join(lines)), "\n".join(lines))


def assert_kept(original: ast.Module, text: str) -> None:
    """Formatting ``text`` is idempotent and keeps its meaning, comments and doc comments."""
    out = fmt(text)
    assert fmt(out) == out
    again = parse_clean(out)
    assert again == original
    assert comment_texts(again) == comment_texts(original)
    assert doc_lines(again) == doc_lines(original)


@pytest.mark.parametrize("path", EXAMPLES + STDLIB, ids=_id)
def test_examples_and_stdlib_are_in_canonical_form(path: Path):
    """What users read first is what `fmflow fmt` writes (`fmflow fmt --check examples stdlib` passes)."""
    text = path.read_text(encoding="utf-8")
    assert fmt(text) == text


# ------------------------------------------------------------ doc comments

def doc_lines(module: ast.Module) -> list[str]:
    """The `##` lines attached to declarations, parameters, fields and members."""
    nodes = [*module.decls]
    for decl in module.decls:
        nodes += [*getattr(decl, "params", ()), *getattr(decl, "fields", ()), *getattr(decl, "members", ())]
    return [line for node in nodes if node.doc is not None for line in node.doc.lines]


@pytest.mark.parametrize("path", ALL_FILES, ids=_id)
def test_doc_comments_survive_verbatim(path: Path):
    text = path.read_text(encoding="utf-8")
    original = parse_clean(text)
    once = fmt(text)
    assert doc_lines(parse_clean(once)) == doc_lines(original)
    for line in doc_lines(original):
        assert line in once


def test_a_documented_parameter_breaks_its_signature():
    text = "flow f(\n  ## The draft.\n  draft: str, round: int = 0) -> str {\n  return draft\n}\n"
    assert fmt(text) == ("flow f(\n  ## The draft.\n  draft: str,\n  round: int = 0,\n) -> str {\n"
                         "  return draft\n}\n")


def test_defaults_print_as_expressions():
    text = 'flow f(a: int=1,b:str = "x"  , c: int = a*2+1, d: list[int] = [ ]) -> int {\n  return a\n}\n'
    assert fmt(text) == ('flow f(a: int = 1, b: str = "x", c: int = a * 2 + 1, d: list[int] = []) -> int {\n'
                         "  return a\n}\n")


def test_a_comment_inside_a_documented_header_moves_above_the_doc():
    text = "## Counts.\nflow g(\n  # about x\n  x: str) -> int {\n  return 1\n}\n"
    out = fmt(text)
    assert out.startswith("# about x\n## Counts.\nflow g(x: str)")
    assert parse_clean(out) == parse_clean(text)


def test_a_comment_among_a_documented_tools_parameters_keeps_docs_and_defaults():
    text = ("## Counts.\ntool t(\n  # about x\n  ## The text.\n  x: str, n: int = 2) -> int = python(\"m:f\")\n"
            "flow f(x: str) -> int {\n  return t(x)\n}\n")
    out = fmt(text)
    assert out.startswith('## Counts.\ntool t(\n  # about x\n  ## The text.\n  x: str,\n  n: int = 2,\n'
                          ') -> int = python("m:f")\n')
    assert parse_clean(out) == parse_clean(text)


def test_doc_comments_that_document_nothing_stay_where_they_are():
    text = ("## after a blank line, not a doc\n\ntype T {\n  a: int\n  ## ends the block\n}\n\n"
            "## above a comment line\n# a comment\nenum E { a, b }\n")
    module = parse_clean(text)
    assert all(d.doc is None for d in module.decls)
    assert [c.text for c in module.comments][:1] == ["## after a blank line, not a doc"]
    assert fmt(text) == text


@pytest.mark.parametrize("seed", range(60))
def test_random_doc_comments_are_kept(seed: int):
    """`##` lines dropped anywhere: whatever they document (or not), fmt keeps it so."""
    rnd = random.Random(seed)
    path = rnd.choice(CORPUS + IDENTITY)
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n")):
        if rnd.random() < 0.3 and '"""' not in line:
            indent = len(line) - len(line.lstrip())
            lines += [" " * indent + f"## doc {number}"] * rnd.randint(1, 2)
        lines.append(line)
    text = "\n".join(lines)
    if any(d.code == "E001" for d in parse_text(text)[1]):
        pytest.skip("a ## line landed inside a block string")
    assert_kept(parse_clean(text), text)
