"""Checks of `eval` declarations (LANGUAGE.md §9).

- ``flow`` names a flow; ``dataset`` is ``jsonl|csv|parquet("path", type: T?)``
  whose file exists; the record type is ``T``, or read from a JSONL file's
  first lines, and it holds every input the flow needs, with fitting types.
- ``variants`` are versions of prompts the flow reaches (``answer@1``);
  ``models`` are declared models; one of the two at most, no repeats.
- ``metrics`` is ``{ name: EXPR, … }``, each over ``record`` and ``output``,
  typed ``bool`` (a rate) or ``int``/``float`` (a mean); metrics may call the
  metric built-ins (fmflow.evals.functions) and prompts or flows as judges.
"""

from __future__ import annotations

import os

from .. import ast
from ..types import BOOL, FLOAT, INT, UNKNOWN, StructType, Type, Unknown, is_assignable
from .expressions import ExprChecker, Scope

METRIC_TYPES = (BOOL, INT, FLOAT)


class MetricChecker(ExprChecker):
    """Types metric expressions: the expression checker plus the metric built-ins."""

    def _infer_Call(self, node: ast.Call, scope: Scope) -> Type:
        from ..evals.functions import METRIC_FUNCTIONS  # loads only for files that declare an eval

        func = node.func
        if isinstance(func, ast.Name) and func.version is None and func.id in METRIC_FUNCTIONS \
                and func.id not in scope.vars and self.ctx.lookup(func.id) is None:
            return self._metric_call(METRIC_FUNCTIONS[func.id], node, scope)
        return super()._infer_Call(node, scope)

    def _metric_call(self, builtin, node: ast.Call, scope: Scope) -> Type:
        if any(a.name is not None for a in node.args):
            self._infer_args(node.args, scope)
            return self.error("E103", f"{builtin.name}() takes its arguments by position", node.span,
                              builtin.signature)
        return self._builtin_call(builtin.name, [a.value for a in node.args], node, scope, builtin)


def check_eval(checker: ExprChecker, decl: ast.EvalDecl) -> None:
    from .typecheck import _expect_ref

    metric_checker = MetricChecker(checker.ctx)
    flow_entry = decl.entry("flow")
    flow = _expect_ref(checker, flow_entry.value, ("flow",), f"'flow' of eval '{decl.name}'") \
        if flow_entry else None
    params, returns = checker.signature(flow) if flow is not None else (None, UNKNOWN)
    record = _check_dataset(checker, decl, flow, params)
    _check_variants(checker, decl, flow)
    _check_models(checker, decl)
    metrics = decl.entry("metrics")
    if metrics is not None:
        _check_metrics(metric_checker, decl, metrics.value, Scope({"record": record, "output": returns}))


def _check_dataset(checker: ExprChecker, decl: ast.EvalDecl, flow, params) -> Type:
    from ..evals.dataset import DatasetProblem, read_dataset_entry, sample_record_type

    entry = decl.entry("dataset")
    if entry is None:
        return UNKNOWN
    folder = os.path.dirname(os.path.abspath(checker.ctx.path))
    try:
        spec = read_dataset_entry(entry.value, folder)
    except DatasetProblem as problem:
        return checker.error("E201", f"{problem} (in eval '{decl.name}')", problem.node.span, problem.help)
    if checker.ctx.source.path.startswith("<") or not os.path.exists(spec.path):
        return checker.error("E002", f"dataset '{spec.written}' of eval '{decl.name}' not found", entry.value.span,
                             f"looked for {spec.path}")
    if not os.path.isfile(spec.path):
        return checker.error("E002", f"dataset '{spec.written}' of eval '{decl.name}' is not a file "
                             f"({'a folder' if os.path.isdir(spec.path) else 'a pipe or device'})", entry.value.span)
    if spec.type_name is not None:
        named = checker.lookup(spec.type_name, Scope(), kinds=("type",))
        if named is None:
            return UNKNOWN
        if not isinstance(named, ast.TypeDecl):
            return checker.error("E201", f"'type:' of a dataset expects a type, but '{named.name}' is a "
                                 f"{named.kind}", spec.type_name.span)
        record: Type = checker.types.resolve(ast.TypeRef(named.name, None, False, span=spec.type_name.span))
    elif spec.format != "jsonl":
        return checker.error("E201", f"the record type of a {spec.format} dataset cannot be read from its "
                             "lines", entry.value.span, f'give it: {spec.format}("{spec.written}", type: T)')
    else:
        try:
            record = sample_record_type(spec.path)
        except (OSError, ValueError) as error:
            return checker.error("E201", f"dataset '{spec.written}' of eval '{decl.name}' is not JSON lines: "
                                 f"{error}", entry.value.span)
    if params is not None and isinstance(record, StructType):
        _check_flow_inputs(checker, decl, flow, params, record, entry.value)
    return record


def _check_flow_inputs(checker: ExprChecker, decl, flow, params, record: StructType, where: ast.Node) -> None:
    fields = checker.types.fields(record)
    for param in params:
        if param.name not in fields:
            if param.required:
                checker.error("E103", f"the records of eval '{decl.name}' lack '{param.name}', an input of "
                              f"flow '{flow.name}'", where.span, f"record fields: {', '.join(fields) or 'none'}")
        elif not is_assignable(fields[param.name], param.type):
            checker.error("E201", f"field '{param.name}' of the records of eval '{decl.name}' is "
                          f"{fields[param.name]}, but flow '{flow.name}' takes {param.type}", where.span)


def _check_variants(checker: ExprChecker, decl: ast.EvalDecl, flow) -> None:
    entry = decl.entry("variants")
    if entry is None:
        return
    if decl.entry("models") is not None:
        checker.error("E104", f"eval '{decl.name}' compares either prompt versions (variants) or models, "
                      "not both", entry.key_span, "write two evals")
    reached = reached_prompts(checker.ctx, flow) if flow is not None else None
    seen: set[tuple[str, int | None]] = set()
    for item in _items(checker, entry.value, f"'variants' of eval '{decl.name}'"):
        if not isinstance(item, ast.Name):
            checker.infer(item, Scope())
            checker.error("E201", "a variant is a prompt version, such as answer@2", item.span)
            continue
        target = checker.lookup(item, Scope(), kinds=("prompt",))
        if target is None:
            continue
        if not isinstance(target, ast.PromptDecl):
            checker.error("E201", f"a variant is a prompt version, but '{item.id}' is a {target.kind}", item.span)
            continue
        key = (item.id, target.effective_version)
        if key in seen:
            checker.error("E102", f"variant {item.id}@{target.effective_version} is listed twice", item.span)
        seen.add(key)
        if reached is not None and item.id not in reached:
            checker.error("E201", f"flow '{flow.name}' never calls prompt '{item.id}', so its versions "
                          "cannot differ in this eval", item.span)


def _check_models(checker: ExprChecker, decl: ast.EvalDecl) -> None:
    from .typecheck import _expect_ref

    entry = decl.entry("models")
    if entry is None:
        return
    seen: set[str] = set()
    for item in _items(checker, entry.value, f"'models' of eval '{decl.name}'"):
        model = _expect_ref(checker, item, ("model",), f"'models' of eval '{decl.name}'")
        if model is not None:
            if model.name in seen:
                checker.error("E102", f"model '{model.name}' is listed twice", item.span)
            seen.add(model.name)


def _items(checker: ExprChecker, value: ast.Node, what: str) -> list[ast.Node]:
    if isinstance(value, ast.ListExpr):
        if not value.items:
            checker.error("E201", f"{what} is empty", value.span, "list at least one")
        return value.items
    checker.infer(value, Scope())
    checker.error("E201", f"{what} expects a list", value.span)
    return []


def _check_metrics(checker: MetricChecker, decl: ast.EvalDecl, value: ast.Node, scope: Scope) -> None:
    if not isinstance(value, ast.DictExpr):
        checker.infer(value, scope)
        checker.error("E201", f"'metrics' of eval '{decl.name}' expects {{ name: expression, … }}", value.span)
        return
    if not value.entries:
        checker.error("E201", f"eval '{decl.name}' has no metrics", value.span,
                      "add one, e.g. { correct: output == record.expected }")
    for entry in value.entries:  # a metric named twice is a repeated dict key: reported as such (E102)
        t = checker.infer(entry.value, scope)
        if not isinstance(t, Unknown) and t not in METRIC_TYPES:
            checker.error("E201", f"metric '{entry.key}' of eval '{decl.name}' must be a bool (a rate) or a "
                          f"number (a mean), got {t}", entry.value.span,
                          "compare it, e.g. output.text == record.expected, or score it with similarity(…)")


def reached_prompts(ctx, flow: ast.FlowDecl) -> set[str]:
    """Names of the prompts a flow calls, directly or through the flows and agents it calls."""
    found: set[str] = set()
    seen: set[int] = set()
    stack: list[ast.Decl] = [flow]
    while stack:
        decl = stack.pop()
        if id(decl) in seen:
            continue
        seen.add(id(decl))
        owner = ctx.loader.context(ctx.symbols.path_of(decl)) if ctx.symbols.path_of(decl) else ctx
        owner = owner or ctx
        for name in ast.read_names(decl):
            target = owner.lookup(name.id, name.version)
            if isinstance(target, ast.PromptDecl):
                found.add(target.name)
            if isinstance(target, (ast.FlowDecl, ast.AgentDecl, ast.PromptDecl)) and target is not decl:
                stack.append(target)
    return found
