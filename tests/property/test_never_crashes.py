"""The parser and checker never raise, whatever the input (LANGUAGE.md §6).

FMFLOW_STRICT=1 makes a crashing checker pass raise instead of becoming an
"internal error" diagnostic, so a checker bug fails these tests. The only
allowed outcome is a list of Diagnostic objects with known codes and spans
inside the text. Runs are derandomized so CI is reproducible.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmflow.api import check, check_text
from fmflow.diagnostics import CODES, Diagnostic, Diagnostics
from fmflow.formatter import format_module, format_text
from fmflow.nesting import MAX_NESTING
from fmflow.parser import KEYWORDS, parse_file, parse_text

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted(
    list((ROOT / "examples").glob("**/*.fmflow"))
    + list((ROOT / "tests" / "roundtrip" / "corpus").glob("*.fmflow"))
    + list((ROOT / "tests" / "language_examples").glob("*.fmflow"))
)
CORPUS_TEXTS = [(str(p), p.read_text(encoding="utf-8")) for p in CORPUS]

SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

NAMES = ["x", "q", "docs", "answer", "fast", "local", "kb", "f", "main", "Answer", "Category", "Doc",
         "str", "int", "float", "bool", "json", "list", "dict", "len", "join", "range", "output",
         "provider", "template", "model_", "python", "env", "reask", "billing", "word_count", "_"]
PUNCTUATION = ["{", "}", "(", ")", "[", "]", ",", ":", "=", "==", "!=", "<", "<=", ">", ">=", "->",
               "|", "+", "-", "*", "/", "%", ".", "@", "?", "@2", "@0"]
LITERALS = ['"openai"', '"x"', '"my_tools:word_count"', '"std/filters"', '"./other.fmflow"', '"."',
            '"a\\qb"', '"\\u{41}"', '"\\u{110000}"', '"unterminated', '"""{{ x }}"""',
            '"""\n  {% for d in docs %}{{ d.text }}{% endfor %}\n"""', '"""{{ nope', '"""',
            "0", "1", "42", "-3", "0.25", "1e-3", "30s", "500ms", "2m", "1h", "60/min", "5/s",
            "true", "false", "null"]
ODD = ["\n", "\n", "\n", "\r\n", "\t", "# comment\n", "$", ";", "§", "\\", "'", "\x00", "é"]
TOKENS = sorted(KEYWORDS) + NAMES + PUNCTUATION + LITERALS + ODD


def assert_diagnostics(result, text: str, path: str) -> None:
    assert isinstance(result, list)
    lines = text.count("\n") + 1
    for d in result:
        assert isinstance(d, Diagnostic)
        assert d.code in CODES, d
        assert isinstance(d.message, str) and d.message
        span = d.span
        assert span.line >= 1 and span.col >= 1, d
        assert (span.end_line, span.end_col) >= (span.line, span.col), d
        if span.path == path:
            assert span.line <= lines + 1, d
            assert span.end_line <= lines + 1, d


def run_both(text: str, path: str = "<string>") -> None:
    """parse, check and fmt: diagnostics, or formatted text that parses to the same program."""
    _module, syntax = parse_text(text, path)
    assert_diagnostics(syntax, text, path)
    assert all(d.code == "E001" for d in syntax)
    assert_diagnostics(check_text(text, path), text, path)
    formatted = format_text(text, path)
    assert (formatted is None) == any(d.code == "E001" for d in syntax)
    if formatted is not None:
        assert not [d for d in parse_text(formatted, path)[1] if d.code == "E001"], formatted[:500]


@pytest.fixture
def strict(monkeypatch, tmp_path):
    monkeypatch.setenv("FMFLOW_STRICT", "1")
    monkeypatch.chdir(tmp_path)  # "<string>" looks for fmflow.lock and imports in the cwd
    return tmp_path


# ------------------------------------------------------------ (a) token soup

token_soup = st.lists(
    st.tuples(st.sampled_from(TOKENS), st.sampled_from([" ", "", " ", "\n"])), max_size=80,
).map(lambda parts: "".join(tok + sep for tok, sep in parts))


@settings(max_examples=150, **SETTINGS)
@given(text=token_soup)
def test_random_tokens_never_crash(strict, text):
    run_both(text)


# --------------------------------------------- (a') declarations from templates

name = st.sampled_from(NAMES)
type_ref = st.sampled_from(["str", "int", "float", "bool", "json", "list[str]", "dict[int]", "str?",
                            "Answer", "Category", "Doc", "list[Doc]", "nope", "list[list[Answer]]"])
atom = st.one_of(name, st.sampled_from(LITERALS[:4] + LITERALS[14:] + ["[]", "{}", '"""{{ x }}"""']))
expr = st.recursive(
    atom,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "==", "<", "and", "or", "in", "not in", "|"]),
                  inner).map(" ".join),
        st.tuples(name, st.lists(inner, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(name, st.lists(st.tuples(name, inner), max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(f'{k}: {v}' for k, v in t[1])})"),
        st.lists(inner, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
        st.tuples(inner, name, inner).map(lambda t: f"[{t[0]} for {t[1]} in {t[2]}]"),
        st.tuples(inner, name).map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, inner, inner).map(lambda t: f"{t[0]} if {t[1]} else {t[2]}"),
        st.lists(st.tuples(name, inner), max_size=3).map(
            lambda kv: "{ " + ", ".join(f"{k}: {v}" for k, v in kv) + " }"),
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"({e})"),
    ),
    max_leaves=8,
)
params = st.lists(st.tuples(name, type_ref), max_size=3).map(
    lambda ps: "(" + ", ".join(f"{n}: {t}" for n, t in ps) + ")")
entry_key = st.sampled_from(["provider", "name", "model", "template", "system", "temperature", "k",
                             "collection", "tools", "flow", "input", "mock", "expect", "on_fail",
                             "check", "fallback", "rate", "timeout", "bogus"])
block = st.lists(st.tuples(entry_key, expr), max_size=4).map(
    lambda es: "{\n" + "\n".join(f"  {k}: {v}" for k, v in es) + "\n}")
statement = st.recursive(
    st.one_of(st.tuples(name, expr).map(lambda t: f"{t[0]} = {t[1]}"), expr.map(lambda e: f"return {e}")),
    lambda inner: st.tuples(expr, st.lists(inner, max_size=2), st.lists(inner, max_size=2)).map(
        lambda t: f"if {t[0]} {{\n" + "\n".join(t[1]) + "\n} else {\n" + "\n".join(t[2]) + "\n}"),
    max_leaves=4,
)
body = st.lists(statement, max_size=4).map(lambda ss: "{\n" + "\n".join(ss) + "\n}")
declaration = st.one_of(
    st.tuples(name, block).map(lambda t: f"model {t[0]} {t[1]}"),
    st.tuples(name, block).map(lambda t: f"retriever {t[0]} {t[1]}"),
    st.tuples(name, block).map(lambda t: f"test {t[0]} {t[1]}"),
    st.tuples(name, st.lists(st.tuples(name, type_ref), max_size=3)).map(
        lambda t: f"type {t[0]} {{ " + ", ".join(f"{n}: {r}" for n, r in t[1]) + " }"),
    st.tuples(name, st.lists(name, max_size=3)).map(lambda t: f"enum {t[0]} {{ {', '.join(t[1])} }}"),
    st.tuples(name, st.sampled_from(["", "@1", "@2", "@0"]), params, type_ref, block).map(
        lambda t: f"prompt {t[0]}{t[1]}{t[2]} -> {t[3]} {t[4]}"),
    st.tuples(name, params, type_ref, block).map(lambda t: f"agent {t[0]}{t[1]} -> {t[2]} {t[3]}"),
    st.tuples(st.sampled_from(["tool", "filter"]), name, params, type_ref, expr).map(
        lambda t: f"{t[0]} {t[1]}{t[2]} -> {t[3]} = {t[4]}"),
    st.tuples(name, params, type_ref, body).map(lambda t: f"flow {t[0]}{t[1]} -> {t[2]} {t[3]}"),
    st.sampled_from(['import "std/filters"', 'import "./missing.fmflow"', 'import "."']),
)
program = st.lists(declaration, min_size=1, max_size=6).map("\n\n".join)


@settings(max_examples=150, **SETTINGS)
@given(text=program)
def test_generated_declarations_never_crash(strict, text):
    run_both(text)


# ------------------------------------------------ (b) mutations of valid files

@st.composite
def mutated(draw):
    path, text = draw(st.sampled_from(CORPUS_TEXTS))
    for _ in range(draw(st.integers(1, 3))):
        n = len(text)
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "truncate", "delete_line"]))
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 80)))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif op == "swap":
            k = draw(st.integers(j, n))
            m = draw(st.integers(k, min(n, k + 80)))
            text = text[:i] + text[k:m] + text[j:k] + text[i:j] + text[m:]
        elif op == "insert":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
        elif op == "truncate":
            text = text[:i]
        else:
            lines = text.split("\n")
            del lines[draw(st.integers(0, len(lines) - 1))]
            text = "\n".join(lines)
    return path, text


@pytest.mark.skipif(not CORPUS_TEXTS, reason="no example files")
@settings(max_examples=200, **SETTINGS)
@given(case=mutated())
def test_mutated_examples_never_crash(strict, case):
    path, text = case
    run_both(text, path)  # the real path: imports and fmflow.lock resolve beside it


@pytest.mark.parametrize("path, text", CORPUS_TEXTS, ids=[Path(p).name for p, _ in CORPUS_TEXTS])
def test_corpus_files_have_no_errors(strict, path, text):
    diagnostics = check_text(text, path)
    assert not [d for d in diagnostics if d.is_error], diagnostics


# ---------------------------------------- (c) deep nesting, long chains

# Wrappers that each add a level of nesting: (before, after) around what is inside.
WRAPPERS = [("[", "]"), ("(", ")"), ("not ", ""), ("-", ""), ("f(", ")"), ("{ a: ", " }"),
            ("x if x else ", ""), ("x[", "]"), ("len(", ")"), ("[y for y in ", "]"), ("(x + ", ")")]
CHAIN_OPS = [" + ", " - ", " * ", " and ", " or ", " | lower", " == "]


@st.composite
def deep_expression(draw):
    """An expression nested up to well past the limit, with long operator chains inside."""
    depth = draw(st.sampled_from([1, 5, MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1, 400, 2500]))
    wrappers = draw(st.lists(st.sampled_from(WRAPPERS), min_size=depth, max_size=depth))
    op = draw(st.sampled_from(CHAIN_OPS))
    terms = draw(st.sampled_from([1, 2, 50, 1500]))
    inner = "x" if op == " | lower" else op.join(["x"] * terms) if op != " == " else "x == x"
    if op == " | lower":
        inner = "x" + op * terms
    return "".join(w[0] for w in wrappers) + inner + "".join(w[1] for w in reversed(wrappers))


@st.composite
def deep_program(draw):
    expr = draw(deep_expression())
    ifs = draw(st.sampled_from([0, 3, MAX_NESTING + 1]))
    body = f"return {expr}"
    for _ in range(ifs):
        body = f"if x {{\n{body}\n}}"
    params = draw(st.sampled_from(["x: json", "x: str", "x: " + "list[" * 40 + "int" + "]" * 40]))
    return f"flow g(x: json) -> json {{ return x }}\nflow main({params}) -> json {{\n{body}\nreturn x\n}}\n"


@settings(max_examples=60, **SETTINGS)
@given(text=deep_program())
def test_deep_nesting_and_long_chains_never_crash(strict, text):
    run_both(text)


# ------------------------------------------------ (d) lone surrogates

surrogate_escape = st.integers(0xD800, 0xDFFF).map(lambda c: "\\u{%X}" % c)
surrogate_char = st.integers(0xD800, 0xDFFF).map(chr)


@st.composite
def with_surrogates(draw):
    path, text = draw(st.sampled_from(CORPUS_TEXTS))
    for _ in range(draw(st.integers(1, 3))):
        quotes = [i for i, c in enumerate(text) if c == '"'] or [0]
        at = draw(st.sampled_from(quotes)) + 1
        piece = draw(st.one_of(surrogate_escape, surrogate_char))
        text = text[:at] + piece + text[at:]
    return path, text


@pytest.mark.skipif(not CORPUS_TEXTS, reason="no example files")
@settings(max_examples=60, **SETTINGS)
@given(case=with_surrogates())
def test_lone_surrogates_never_crash(strict, case):
    path, text = case
    run_both(text, path)


# --------------------------------------------- (e) bytes that are not UTF-8

@st.composite
def broken_bytes(draw):
    _path, text = draw(st.sampled_from(CORPUS_TEXTS))
    data = bytearray(text.encode("utf-8"))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=4))
    if draw(st.booleans()):
        data[0:0] = b"\xef\xbb\xbf"  # a byte order mark in front
    return bytes(data)


@pytest.mark.skipif(not CORPUS_TEXTS, reason="no example files")
@settings(max_examples=60, **SETTINGS)
@given(data=broken_bytes())
def test_bytes_that_are_not_utf8_never_crash(strict, data):
    path = strict / "broken.fmflow"
    path.write_bytes(data)
    diagnostics = Diagnostics()
    source, module = parse_file(str(path), diagnostics)
    found = diagnostics.sorted()
    assert_diagnostics(found, source.text, str(path))
    if not any(d.code == "E001" for d in found):
        format_module(module)
    assert_diagnostics(check(path), source.text, str(path))
