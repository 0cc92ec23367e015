"""Null narrowing (LANGUAGE.md §3): where the checker knows a `T?` is not null, it is a `T`.

Each case is a flow body over `x: str?`, `e: Email?` (with `cc: str?`) and
`n: int?`, calling `need(str)`; it checks clean or reports exactly the E201s
at the lines given (counted within the body).
"""

from __future__ import annotations

import textwrap

import pytest

from fmflow.api import check_text

HEADER = '''\
type Email {
  subject: str
  cc: str?
}

tool need(s: str) -> str = python("m:need")

flow f(x: str?, e: Email?, n: int?, xs: list[str?]) -> str {
'''
FIRST_LINE = HEADER.count("\n") + 1


def errors(body: str) -> list[tuple[str, int]]:
    text = HEADER + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + '\n  return "done"\n}\n'
    found = [(d.code, d.span.line - FIRST_LINE + 1) for d in check_text(text, "n.fmflow") if d.is_error]
    return sorted(found, key=lambda item: item[1])


@pytest.mark.parametrize("body", [
    "if x != null {\n  a = need(x)\n}",
    "if null != x {\n  a = need(x)\n}",
    "if x == null {\n  a = 1\n} else {\n  b = need(x)\n}",
    "if x == null {\n  return \"none\"\n}\nb = need(x)",
    "if x == null or n == null {\n  return \"none\"\n}\nb = need(x)\nc = n + 1",
    "if not (x == null) {\n  a = need(x)\n}",
    "if x {\n  a = need(x)\n}",
    "a = need(x if x != null else \"none\")",
    "a = need(x) if x != null else \"none\"",
    "a = x == null or len(need(x)) > 0",
    "a = x != null and n != null and len(need(x)) > n",
    "if e != null and e.cc != null {\n  a = need(e.cc) + need(e.subject)\n}",
    "if e == null {\n  return \"none\"\n}\nif e.cc == null {\n  return \"no cc\"\n}\na = need(e.cc)",
    "a = [need(y) for y in xs if y != null]",
    "if x == null {\n  return \"a\"\n} elif n == null {\n  return \"b\"\n}\nc = need(x) + str(n + 1)",
    "if n == null {\n  return \"a\"\n} elif n > 3 {\n  b = n * 2\n}",
    "if x == null {\n  if n == null {\n    return \"a\"\n  }\n  return \"b\"\n}\nc = need(x)",
])
def test_narrowed_forms_check_clean(body):
    assert errors(body) == []


@pytest.mark.parametrize("body, expected", [
    ("a = need(x)", [("E201", 1)]),
    ("if x != null {\n  a = 1\n}\nb = need(x)", [("E201", 4)]),           # only inside the if
    ("if x == null {\n  a = 1\n}\nb = need(x)", [("E201", 4)]),           # the arm goes on
    ("if x == null {\n  return \"a\"\n} else {\n  c = 1\n}\nb = need(x)", []),
    ("if x == null {\n  c = 1\n} elif n == null {\n  return \"b\"\n}\nb = need(x)", [("E201", 6)]),
    ("a = need(x) if x == null else \"x\"", [("E201", 1)]),
    ("a = x != null or len(need(x)) > 0", [("E201", 1)]),
    ("a = x == null and len(need(x)) > 0", [("E201", 1)]),
    ("if e != null {\n  a = need(e.cc)\n}", [("E201", 2)]),                # e is known, not e.cc
    ("if x != null {\n  a = [need(x) for x in xs]\n}", [("E201", 2)]),     # another x
    ("if x != null or n != null {\n  a = need(x)\n}", [("E201", 2)]),
    ("b = n + 1", [("E201", 1)]),
])
def test_what_is_not_known_stays_optional(body, expected):
    assert errors(body) == expected
