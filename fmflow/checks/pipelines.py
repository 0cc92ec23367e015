"""Pipelines (LANGUAGE.md §8): each step typed against the record type it receives.

`record` is the source's `type:` (or `{ path, text }` for `files(…)`), then
each step's result: `map` and `expand` change it, the other steps pass it on.
The record type after each part is stored in ``ctx.expr_types`` under the
part's call node, so the data engine validates records between stages with
the types the checker found.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import ast
from ..types import (BOOL, FLOAT, INT, JSON, STR, UNKNOWN, DeclRef, DictType, EnumType, ListType, OptionalType,
                     StructType, Type, is_assignable, strip_optional)
from .context import CheckContext
from .expressions import ExprChecker, Scope
from .typecheck import check_bound
from .blocks import Bound, KeySpec

if TYPE_CHECKING:  # the steps' reader loads only for files that declare a pipeline
    from ..pipeline_steps import Part

FILE_RECORD = StructType("FileRecord", "<builtin>", fields=(("path", STR), ("text", STR)))
NEAR = KeySpec(FLOAT, bound=Bound(0, 1, above=True))
SAMPLE_SIZE = KeySpec(INT, bound=Bound(low=1))
MAPPABLE = ("flow", "prompt", "agent", "tool", "filter")
_SCALARS = (STR, INT, FLOAT, BOOL)


def check_pipelines(ctx: CheckContext) -> None:
    checker = ExprChecker(ctx)
    for decl in ctx.module.decls:
        if isinstance(decl, ast.PipelineDecl):
            _check_pipeline(checker, decl)


def _check_pipeline(checker: ExprChecker, decl: ast.PipelineDecl) -> None:
    from ..pipeline_steps import read_pipeline

    spec = read_pipeline(decl, checker.error)
    record = _source_type(checker, spec.source) if spec.source is not None else UNKNOWN
    for step in spec.steps:
        record = _check_step(checker, step, record)
        checker.ctx.expr_types[id(step.call)] = record
    if spec.sink is not None:
        _check_sink(checker, decl, spec.sink, record)
    for value in spec.unread:  # names inside a part that could not be read are still checked
        if not (isinstance(value, ast.Name) and value.id == "record"):
            checker.infer(value, Scope({"record": UNKNOWN}))


def _source_type(checker: ExprChecker, source: Part) -> Type:
    first = source.args.get("path", source.args.get("glob"))
    checker.expect(first, STR, Scope(), f"the path of {source.kind}(…)")
    record: Type = FILE_RECORD
    if source.kind != "files":
        record = _record_type(checker, source.args["type"])
    checker.ctx.expr_types[id(source.call)] = record
    return record


def _record_type(checker: ExprChecker, node: ast.Node) -> Type:
    if not isinstance(node, ast.Name) or node.version is not None:
        checker.infer(node, Scope())
        return checker.error("E201", "the `type:` of a source is the name of a declared type", node.span,
                             "e.g. jsonl(\"data/raw.jsonl\", type: Raw)")
    decl = checker.lookup(node, Scope(), kinds=("type",))
    if decl is None:
        return UNKNOWN
    if not isinstance(decl, ast.TypeDecl):
        article = "an" if decl.kind[0] in "aeiou" else "a"
        return checker.error("E201", f"the `type:` of a source must be a type, but '{node.id}' is {article} "
                             f"{decl.kind}", node.span)
    return checker.types.resolve(ast.TypeRef(decl.name, None, False, span=node.span))


# ------------------------------------------------------------------ steps

def _check_step(checker: ExprChecker, step: Part, record: Type) -> Type:
    scope = Scope({"record": record})
    args = step.args
    what = step.label()
    if step.kind in ("keep", "drop"):
        checker.expect(args["condition"], BOOL, scope, f"the condition of {what}")
        return record
    if step.kind == "map":
        return _mapped(checker, args["value"], record, scope, what)
    if step.kind == "expand":
        values = _mapped(checker, args["values"], record, scope, what)
        if isinstance(strip_optional(values), ListType):
            return strip_optional(values).item
        if values not in (UNKNOWN, JSON):
            checker.error("E201", f"{what} expects a list (one record becomes several), got {values}",
                          args["values"].span, "e.g. expand(augment(r: record)) with a flow returning a list")
        return UNKNOWN
    if step.kind == "dedupe":
        _check_dedupe(checker, step, scope, what)
    elif step.kind == "sample":
        for name, spec in (("n", SAMPLE_SIZE), ("seed", KeySpec(INT))):
            checker.expect(args[name], INT, Scope(), f"'{name}' of {what}")
            check_bound(checker, args[name], spec, f"'{name}' of {what}")
    elif step.kind == "embed":
        _check_embed(checker, step, scope, what)
    return record


def _mapped(checker: ExprChecker, value: ast.Node, record: Type, scope: Scope, what: str) -> Type:
    """The type ``map(value)`` gives: a callable's result (it takes the record), or the expression's type."""
    if isinstance(value, ast.Name) and value.id != "record":
        decl = checker.lookup(value, scope, kinds=MAPPABLE)
        if decl is None:
            return UNKNOWN
        signature = checker.signature(decl)
        if signature is None:
            return checker.error("E201", f"{what} takes an expression or a flow, prompt, agent, tool or filter; "
                                 f"'{value.id}' is a {decl.kind}", value.span)
        params, returns = signature
        required = [p for p in params if p.required]
        if not params or len(required) > 1:
            return checker.error("E103", f"{what}: {decl.kind} '{decl.name}' must take one parameter (the "
                                 f"record), it takes {len(params)}", value.span,
                                 f"call it with named arguments instead: {value.id}(…: record)")
        if not is_assignable(record, params[0].type):
            return checker.error("E201", f"{what}: {decl.kind} '{decl.name}' takes {params[0].type} "
                          f"('{params[0].name}'), but the record here is {record}", value.span,
                          _record_help(record))
        return returns
    result = checker.infer(value, scope)
    if isinstance(result, DeclRef):
        return checker.error("E201", f"{what} gives {result}, not a record", value.span)
    return result


def _record_help(record: Type) -> str | None:
    return f"the step before gives {record} records" if record is not UNKNOWN else None


def _check_dedupe(checker: ExprChecker, step: Part, scope: Scope, what: str) -> None:
    near = step.args.get("near")
    key = step.args["key"]
    if near is None:
        checker.infer(key, scope)
        return
    checker.expect(key, STR, scope, f"the key of {what}, compared as text with near:,")
    checker.expect(near, FLOAT, Scope(), f"'near' of {what}")
    check_bound(checker, near, NEAR, f"'near' of {what}", "a cosine similarity, e.g. near: 0.92")


def _check_embed(checker: ExprChecker, step: Part, scope: Scope, what: str) -> None:
    args = step.args
    checker.expect(args["into"], STR, Scope(), f"'into' of {what} (a collection name, the same for every record)")
    checker.expect(args["text"], STR, scope, f"'text' of {what}")
    if "id" in args:
        checker.expect(args["id"], STR, scope, f"'id' of {what}")
    if "metadata" in args:
        checker.expect(args["metadata"], DictType(JSON), scope, f"'metadata' of {what}")
    if "store" in args:
        checker.expect(args["store"], STR, Scope(), f"'store' of {what}")


# ------------------------------------------------------------------- sink

def _check_sink(checker: ExprChecker, decl: ast.PipelineDecl, sink: Part, record: Type) -> None:
    checker.expect(sink.args["path"], STR, Scope(), f"the path of {sink.kind}(…)")
    if record is UNKNOWN or sink.kind == "jsonl":
        return
    plain = strip_optional(record)
    if not isinstance(plain, StructType):
        checker.error("E201", f"a {sink.kind} sink writes records of a declared type (one column per field), "
                      f"but the records of pipeline '{decl.name}' are {record}", sink.span,
                      "map each record to a type first, or write jsonl(…)")
        return
    if sink.kind == "csv":
        for name, t in checker.types.fields(plain).items():
            if not _csv_cell(t):
                checker.error("E201", f"a csv sink writes one text cell per field, but field '{name}' of "
                              f"{plain} is {t}", sink.span, "write jsonl(…) or parquet(…), or map it to text first")


def _csv_cell(t: Type) -> bool:
    inner = t.inner if isinstance(t, OptionalType) else t
    return inner in _SCALARS or isinstance(inner, EnumType) or inner is UNKNOWN
