"""Doc comments: ``##`` lines directly above a declaration, a parameter, a type
field or an enum member document it (LANGUAGE.md §1).

The lexer reads them as comments; right after parsing, each run of ``##``
lines on consecutive lines, each alone on its line, whose last line is just
above the line where a documentable node starts (with nothing before the node
on that line) becomes that node's ``doc`` and leaves ``Module.comments``. Any
other ``##`` (a blank line before the node, a ``#`` line between, at the end
of a block, above a statement or a block entry) documents nothing and stays an
ordinary comment: the formatter keeps it where it is, and nothing reports it.
``###`` and longer runs of ``#`` are ordinary comments (section rulers).
"""

from __future__ import annotations

from typing import Iterator

from . import ast
from .source import SourceFile

DOC_PREFIX = "##"


def is_doc_comment(comment: ast.Comment) -> bool:
    return comment.own_line and is_doc_comment_text(comment.text)


def is_doc_comment_text(text: str) -> bool:
    return text.startswith(DOC_PREFIX) and not text.startswith("###")


def doc_text(lines: list[str]) -> str:
    """The text a doc comment gives tools and schemas: ``##`` and one space dropped, lines joined."""
    body = []
    for line in lines:
        text = line[len(DOC_PREFIX):]
        body.append(text[1:] if text.startswith(" ") else text)
    return "\n".join(body).strip()


def attach_doc_comments(module: ast.Module, source: SourceFile) -> None:
    """Give each documentable node the ``##`` run just above it, and take those runs out of the comments."""
    runs = _runs_by_next_line([c for c in module.comments if is_doc_comment(c)])
    if not runs:
        return
    used: set[int] = set()
    for node in _documentable(module):
        run = runs.get(node.span.line)
        if run is None or source.line_text(node.span.line)[: node.span.col - 1].strip():
            continue
        first, last = run[0], run[-1]
        start = source.offset(first.line, first.col)
        node.doc = ast.DocComment(doc_text([c.text for c in run]), [c.text for c in run],
                                  span=source.span(start, source.offset(last.line, last.col) + len(last.text)))
        used.update(id(c) for c in run)
        del runs[node.span.line]  # two nodes on one line: the first one (in source order) takes it
    module.comments = [c for c in module.comments if id(c) not in used]


def _runs_by_next_line(docs: list[ast.Comment]) -> dict[int, list[ast.Comment]]:
    """Runs of doc comments on consecutive lines, keyed by the line right after each run."""
    runs: dict[int, list[ast.Comment]] = {}
    current: list[ast.Comment] = []
    for comment in sorted(docs, key=lambda c: c.line):
        if current and comment.line != current[-1].line + 1:
            runs[current[-1].line + 1] = current
            current = []
        current.append(comment)
    if current:
        runs[current[-1].line + 1] = current
    return runs


def _documentable(module: ast.Module) -> Iterator[ast.Node]:
    """Declarations, their parameters, type fields and enum members, in source order."""
    for decl in module.decls:
        yield decl
        yield from getattr(decl, "params", ())
        yield from getattr(decl, "fields", ())
        yield from getattr(decl, "members", ())
