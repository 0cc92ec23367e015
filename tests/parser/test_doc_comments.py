"""Doc comments and parameter defaults in the parser (LANGUAGE.md §1, §2)."""

from __future__ import annotations

import textwrap

from fmflow import ast
from fmflow.parser import parse_text


def parse(text: str) -> ast.Module:
    module, diagnostics = parse_text(textwrap.dedent(text))
    assert diagnostics == [], diagnostics
    return module


def doc(node) -> str | None:
    return node.doc.text if node.doc is not None else None


def test_doc_comments_document_what_is_right_below_them():
    module = parse('''
        ## A ticket.
        ##
        ##   Indented text keeps its indentation after one space.
        type Ticket {
          ## Its subject.
          subject: str
          body: str
        }

        ##No space after the hashes.
        enum Kind {
          ## A question.
          question,
          other
        }

        ## Rewrites a draft.
        flow refine(
          ## The draft.
          draft: str,
          ## How many rounds so far.
          round: int = 0,
        ) -> str {
          return draft
        }
    ''')
    ticket, kind, refine = module.decls
    assert doc(ticket) == "A ticket.\n\n  Indented text keeps its indentation after one space."
    assert [doc(f) for f in ticket.fields] == ["Its subject.", None]
    assert doc(kind) == "No space after the hashes."
    assert [doc(m) for m in kind.members] == ["A question.", None]
    assert doc(refine) == "Rewrites a draft."
    assert [doc(p) for p in refine.params] == ["The draft.", "How many rounds so far."]
    assert ticket.doc.lines == ["## A ticket.", "##", "##   Indented text keeps its indentation after one space."]
    assert (ticket.doc.span.line, ticket.doc.span.end_line) == (2, 4)
    assert module.comments == []  # attached doc comments are not comments any more


def test_doc_comments_that_document_nothing_stay_comments():
    module = parse('''
        ## A blank line follows.

        model m { provider: "openai" }

        ## A comment line follows.
        # ordinary
        type T {
          a: int  ## trailing: not a doc
          ## at the end of a block
        }

        ### a ruler
        flow f(x: int) -> int {
          ## above a statement
          y = x
          return y
        }
        ## at the end of the file
    ''')
    assert all(d.doc is None for d in module.decls)
    assert [c.text for c in module.comments] == [
        "## A blank line follows.", "## A comment line follows.", "# ordinary", "## trailing: not a doc",
        "## at the end of a block", "### a ruler", "## above a statement", "## at the end of the file"]


def test_only_a_node_that_starts_its_line_takes_the_doc():
    module = parse('''
        ## The enum, not its first member.
        enum E { a, b }
        flow f(a: int,
          ## b, which starts its line.
          b: int, c: int) -> int {
          return a
        }
    ''')
    enum, flow = module.decls
    assert doc(enum) == "The enum, not its first member." and doc(enum.members[0]) is None
    assert [doc(p) for p in flow.params] == [None, "b, which starts its line.", None]


def test_docs_count_in_the_ast_but_their_spacing_does_not():
    one = parse("## Words.\ntype T {\n  a: int\n}\n")
    assert one == parse("##    Words.\ntype T {\n  a: int\n}\n".replace("##    ", "## "))
    assert one != parse("## Other words.\ntype T {\n  a: int\n}\n")
    assert one != parse("type T {\n  a: int\n}\n")


def test_defaults_are_expressions_of_the_ast():
    flow = parse('flow f(a: int, b: int = a * 2, c: str? = null, d: list[str] = ["x"]) -> int {\n'
                 '  return a\n}\n').decls[0]
    a, b, c, d = flow.params
    assert a.default is None
    assert isinstance(b.default, ast.Binary) and b.default.op == "*"
    assert isinstance(c.default, ast.Literal) and c.default.kind == "null"
    assert isinstance(d.default, ast.ListExpr)
    assert b.default.span.line == 1 and b.default.span.col == 25


def test_a_required_parameter_after_a_defaulted_one_is_a_syntax_error():
    module, diagnostics = parse_text("tool t(a: int = 1, b: str, c: int = 2, d: int) -> int = python(\"m:f\")\n")
    assert [(d.code, d.span.col, d.message) for d in diagnostics] == [
        ("E001", 20, "parameter 'b' needs a default: it follows 'a', which has one"),
        ("E001", 40, "parameter 'd' needs a default: it follows 'a', which has one"),
    ]
    assert [p.name for p in module.decls[0].params] == ["a", "b", "c", "d"]  # the rest of the file is kept
