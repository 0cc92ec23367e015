"""What a `pipeline` declaration says: its source, its steps and its sink (LANGUAGE.md §8).

The parser keeps a pipeline as a block of entries (like a model or a test);
``read_pipeline`` reads the entries into a ``PipelineSpec`` of calls bound to
their parameters. The checker (checks/pipelines.py), ``fmflow graph`` and
the data engine (fmflow/data/pipeline*.py) all read a pipeline through it, so
they agree on what each step's arguments are. Every part keeps the AST node
it was written as, hence its span.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import ast
from .diagnostics import suggestion_help


@dataclass(frozen=True)
class Signature:
    """The parameters of a source, sink or step: positional first, then named-only."""

    positional: tuple[str, ...]
    named: tuple[str, ...] = ()
    required: frozenset[str] = frozenset()

    def text(self, kind: str) -> str:
        parts = [p.upper() for p in self.positional]
        parts += [f"{n}: …" if n in self.required else f"{n}: …?" for n in self.named]
        return f"{kind}({', '.join(parts)})"


def _sig(positional=(), named=(), optional=()) -> Signature:
    names = (*positional, *named)
    return Signature(tuple(positional), tuple(named), frozenset(n for n in names if n not in optional))


SOURCES = {
    "jsonl": _sig(["path"], ["type"]),
    "csv": _sig(["path"], ["type"]),
    "parquet": _sig(["path"], ["type"]),
    "files": _sig(["glob"]),
}
SINKS = {"jsonl": _sig(["path"]), "csv": _sig(["path"]), "parquet": _sig(["path"])}
STEPS = {
    "keep": _sig(["condition"]),
    "drop": _sig(["condition"]),
    "map": _sig(["value"]),
    "expand": _sig(["values"]),
    "dedupe": _sig(["key"], ["near"], optional=["near"]),
    "sample": _sig(["n"], ["seed"]),
    "embed": _sig((), ["into", "text", "id", "metadata", "store"], optional=["id", "metadata", "store"]),
}
# Steps that need every record before they can pass one on (or that write to one shared
# store): they run in the job's own process over the records in source order.
WHOLE_STEPS = frozenset({"dedupe", "sample", "embed"})
KEYS = ("source", "steps", "sink")

Report = Callable[[str, str, object, "str | None"], None]  # (code, message, span, help)


@dataclass
class Part:
    """A source, sink or step as written: ``kind(args…)``, its arguments bound to parameter names."""

    kind: str
    call: ast.Node
    args: dict[str, ast.Node] = field(default_factory=dict)
    index: int = 0  # the step's position in `steps`, from 0

    @property
    def span(self):
        return self.call.span

    def label(self) -> str:
        return f"step {self.index + 1} ({self.kind})"


@dataclass
class PipelineSpec:
    decl: ast.PipelineDecl
    source: Part | None
    steps: list[Part]
    sink: Part | None
    complete: bool  # every part was read without a problem
    # Argument values of parts that could not be read (unknown kind, bad arguments): the
    # checker still checks the names in them.
    unread: list[ast.Node] = field(default_factory=list)


def read_pipeline(decl: ast.PipelineDecl, report: Report | None = None) -> PipelineSpec:
    """The source, steps and sink of ``decl``; problems go to ``report`` (E101 E103 E201)."""
    problems: list[int] = []
    unread: list[ast.Node] = []

    def note(code: str, message: str, span, help: str | None = None) -> None:
        problems.append(1)
        if report is not None:
            report(code, message, span, help)

    source = _endpoint(decl, "source", SOURCES, note, unread)
    sink = _endpoint(decl, "sink", SINKS, note, unread)
    steps: list[Part] = []
    entry = decl.entry("steps")
    if entry is not None:
        if not isinstance(entry.value, ast.ListExpr):
            note("E201", f"'steps' of pipeline '{decl.name}' expects a list of steps, e.g. [keep(…), map(…)]",
                 entry.value.span, None)
        else:
            for index, item in enumerate(entry.value.items):
                step = _part(item, "step", STEPS, note, unread)
                if step is not None:
                    step.index = index
                    steps.append(step)
    return PipelineSpec(decl, source, steps, sink, not problems, unread)


def _endpoint(decl: ast.PipelineDecl, key: str, table: dict[str, Signature], note: Report,
              unread: list[ast.Node]) -> Part | None:
    entry = decl.entry(key)
    return None if entry is None else _part(entry.value, key, table, note, unread)


def _part(node: ast.Node, what: str, table: dict[str, Signature], note: Report,
          unread: list[ast.Node]) -> Part | None:
    part = _read_part(node, what, table, note)
    if part is None:
        unread.extend(a.value for a in node.args) if isinstance(node, ast.Call) else unread.append(node)
    return part


def _read_part(node: ast.Node, what: str, table: dict[str, Signature], note: Report) -> Part | None:
    kinds = ", ".join(f"{k}(…)" for k in table)
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.version is None):
        note("E201", f"a pipeline {what} is written as a call, e.g. {next(iter(table))}(…)", node.span,
             f"{what}s: {kinds}")
        return None
    kind = node.func.id
    signature = table.get(kind)
    if signature is None:
        note("E101", f"unknown pipeline {what} '{kind}'", node.func.span,
             suggestion_help(kind, table) or f"{what}s: {kinds}")
        return None
    args = _bind(node, kind, signature, note)
    return None if args is None else Part(kind, node, args)


def _bind(call: ast.Call, kind: str, signature: Signature, note: Report) -> dict[str, ast.Node] | None:
    bound: dict[str, ast.Node] = {}
    positional = list(signature.positional)
    ok = True
    named_seen = False
    for arg in call.args:
        named_seen = named_seen or arg.name is not None
        if arg.name is None:
            if not positional or named_seen:
                note("E103", f"{kind}(…) takes {len(signature.positional)} positional argument"
                     f"{'' if len(signature.positional) == 1 else 's'}", arg.span,
                     f"write {signature.text(kind)}")
                ok = False
                continue
            bound[positional.pop(0)] = arg.value
        elif arg.name in (*signature.positional, *signature.named) and arg.name not in bound:
            bound[arg.name] = arg.value
        else:
            problem = "twice" if arg.name in bound else "unknown"
            note("E103", f"{kind}(…) has no argument '{arg.name}'" if problem == "unknown"
                 else f"{kind}(…) takes '{arg.name}' once", arg.span,
                 suggestion_help(arg.name, signature.named) or f"write {signature.text(kind)}")
            ok = False
    missing = [name for name in (*signature.positional, *signature.named)
               if name in signature.required and name not in bound]
    if missing:
        note("E103", f"{kind}(…) is missing {', '.join(repr(m) for m in missing)}", call.span,
             f"write {signature.text(kind)}")
        ok = False
    return bound if ok else None


def segments(steps: list[Part]) -> list[tuple[str, list[Part]]]:
    """The steps cut into stages: runs of per-record steps ("records") and single whole-data steps ("whole")."""
    stages: list[tuple[str, list[Part]]] = []
    for step in steps:
        if step.kind in WHOLE_STEPS:
            stages.append(("whole", [step]))
        elif stages and stages[-1][0] == "records":
            stages[-1][1].append(step)
        else:
            stages.append(("records", [step]))
    return stages
