"""`test` blocks: run a flow with mocked calls or scripted models and check its expectations.

A test's ``mock`` answers whole calls; its ``models`` script the replies of
models, so that everything between the call and the model (templates,
parsing, ``check:``, ``on_fail``, agent rounds) runs for real; a cassette
beside the file answers the rest (see test_models.py). ``expect`` sees
``output`` and ``calls``, the calls made to each callee.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from .. import ast
from ..checks.expressions import CALLABLE_KINDS
from ..formatter import expr_doc, flat
from .errors import FlowRuntimeError
from .evaluate import Evaluator, truthy
from .run import RunOptions, RunState
from .test_models import TestModels


@dataclass
class TestOutcome:
    name: str
    flow: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    error: str | None = None
    duration_ms: float = 0.0


@dataclass
class TestReport:
    """The outcomes of a file's tests, and what `--record` wrote."""

    outcomes: list[TestOutcome]
    cassette: str | None = None   # the cassette written by --record (None: nothing recorded)
    recorded: int = 0             # replies this run recorded in it

    def __iter__(self):
        """The outcomes, in the file's order (a report reads as the list of its tests)."""
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)


async def run_tests(program, options: RunOptions | None = None, record: bool = False,
                    names: set[str] | None = None) -> TestReport:
    """Run the test blocks of the program's file, one after the other: all of them, or those ``names`` names.

    ``options`` gives what a test run takes from outside (workdir, `--model`,
    `--max-depth`); mocks, scripts and the cassette come from the tests.
    ``record``: model requests no mock or script answers go to the real models,
    and their replies are written to the file's cassette (the replies recorded
    for the tests that do not run stay in it).
    """
    from .cassette import Cassette, cassette_path

    tests = [d for d in program.ctx.module.decls
             if isinstance(d, ast.TestDecl) and (names is None or d.name in names)]
    try:
        cassette = Cassette(cassette_path(program.path), record=record,
                            rerecorded={t.name for t in tests} if names is not None else None)
    except FlowRuntimeError as error:  # a damaged cassette fails every test of its file, saying why
        return TestReport([TestOutcome(t.name, program.lookup(t.entry("flow").value.id).name, False, error=str(error))
                           for t in tests])
    outcomes = [await run_test(program, test, options, cassette) for test in tests]
    if not record:
        return TestReport(outcomes)
    return TestReport(outcomes, cassette.path, cassette.save())


async def run_test(program, test: ast.TestDecl, options: RunOptions | None = None, cassette=None) -> TestOutcome:
    started = time.perf_counter()
    flow = program.lookup(test.entry("flow").value.id)
    outcome = TestOutcome(test.name, flow.name, passed=False)
    base = options or RunOptions(cache=False, trace=False)
    setup = RunState(program, RunOptions(cache=False, trace=False, mocks={}))
    try:
        evaluator = Evaluator(setup, test)
        inputs = await _dict_entry(evaluator, test, "input")
        mocks = await _dict_entry(evaluator, test, "mock")
        scripts = _scripts(program, await _dict_entry(evaluator, test, "models"))
        state = RunState(program, replace(base, cache=False, trace=False, mocks=mocks, on_text=None,
                                          test_models=TestModels(test.name, scripts, cassette, setup.secrets)),
                         secrets=setup.secrets)
        params, _returns = program.signature(flow)
        args = {name: state.validate(t, inputs[name], f"input '{name}'") for name, t in params
                if name in inputs}  # the checker made sure only inputs with a default are left out
        output = await state.run_flow(flow, args)
        calls = {name: 0 for name in _callables(program)} | state.calls
        outcome.failures = await _failed_expectations(Evaluator(state, test, {"output": output, "calls": calls}), test)
        outcome.passed = not outcome.failures
    except FlowRuntimeError as error:
        outcome.error = str(error.mask(setup.secrets))
    outcome.failures = [setup.secrets.mask(failure) for failure in outcome.failures]   # values shown may hold env()
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    return outcome


def _scripts(program, scripted: dict[str, Any]) -> dict[tuple[str, str], list[Any]]:
    """A test's `models:` by the key of the model each name declares (`default` may be undeclared)."""
    found = {}
    for name, replies in scripted.items():
        decl = program.lookup(name)
        path = program.context_of(decl).path if isinstance(decl, ast.ModelDecl) else program.path
        found[(path, name)] = list(replies)
    return found


def _callables(program) -> list[str]:
    return [name for name, decls in program.ctx.symbols.decls.items() if decls[0].kind in CALLABLE_KINDS]


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
