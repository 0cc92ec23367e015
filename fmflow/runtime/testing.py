"""`test` blocks: run a flow with mocked calls and check its expectations."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .. import ast
from ..formatter import expr_doc, flat
from .errors import FlowRuntimeError
from .evaluate import Evaluator, truthy
from .run import RunOptions, RunState


@dataclass
class TestOutcome:
    name: str
    flow: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    error: str | None = None
    duration_ms: float = 0.0


async def run_tests(program, options: RunOptions | None = None) -> list[TestOutcome]:
    tests = [d for d in program.ctx.module.decls if isinstance(d, ast.TestDecl)]
    return [await run_test(program, test, options) for test in tests]


async def run_test(program, test: ast.TestDecl, options: RunOptions | None = None) -> TestOutcome:
    started = time.perf_counter()
    flow = program.lookup(test.entry("flow").value.id)
    outcome = TestOutcome(test.name, flow.name, passed=False)
    base = options or RunOptions(cache=False, trace=False)
    setup = RunState(program, RunOptions(cache=False, trace=False, mocks={}))
    try:
        evaluator = Evaluator(setup, test)
        inputs = await _dict_entry(evaluator, test, "input")
        mocks = await _dict_entry(evaluator, test, "mock")
        state = RunState(program, RunOptions(cache=False, trace=False, workdir=base.workdir, mocks=mocks),
                         secrets=setup.secrets)
        params, _returns = program.signature(flow)
        args = {name: state.validate(t, inputs[name], f"input '{name}'") for name, t in params
                if name in inputs}  # the checker made sure only inputs with a default are left out
        output = await state.run_flow(flow, args)
        outcome.failures = await _failed_expectations(Evaluator(state, test, {"output": output}), test)
        outcome.passed = not outcome.failures
    except FlowRuntimeError as error:
        outcome.error = str(error.mask(setup.secrets))
    outcome.failures = [setup.secrets.mask(failure) for failure in outcome.failures]   # values shown may hold env()
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    return outcome


async def _dict_entry(evaluator: Evaluator, test: ast.TestDecl, key: str) -> dict[str, Any]:
    entry = test.entry(key)
    return await evaluator.eval(entry.value) if entry is not None else {}


async def _failed_expectations(evaluator: Evaluator, test: ast.TestDecl) -> list[str]:
    entry = test.entry("expect")
    if entry is None:
        return []
    items = entry.value.items if isinstance(entry.value, ast.ListExpr) else [entry.value]
    failures = []
    for item in items:
        try:
            if truthy(await evaluator.eval(item)):
                continue
            failures.append(await _explain(evaluator, item))
        except FlowRuntimeError as error:
            failures.append(f"expect {flat(expr_doc(item))}\n  could not be evaluated: {error.cause}")
    return failures


async def _explain(evaluator: Evaluator, item: ast.Node) -> str:
    """The failing expression and the value of each of its parts."""
    lines = [f"expect {flat(expr_doc(item))}"]
    parts: list[ast.Node] = []
    if isinstance(item, ast.Binary):
        parts = [item.left, item.right]
    elif isinstance(item, ast.Unary):
        parts = [item.operand]
    elif isinstance(item, ast.Call):
        parts = [a.value for a in item.args]
    for part in parts:
        if isinstance(part, ast.Literal):
            continue
        value = evaluator.run.program.types.to_jsonable(await evaluator.eval(part))
        lines.append(f"  {flat(expr_doc(part))} = {_show(value)}")
    return "\n".join(lines)


def _show(value: Any) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 200 else text[:197] + "..."
