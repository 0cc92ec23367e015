"""The per-record steps of a pipeline (keep, drop, map, expand), run by the data engine's driver.

A stage of per-record steps is a job like a batch's (driver.py): the engine
(local or Dask) runs ``PipelineRunner`` on each record of the stage's input,
and the driver writes each outcome, in input order, as one line of the
stage's file:

    {"line": SOURCE_LINE, "out": [record, …], "counts": [[in, out], …]}
    {"line": SOURCE_LINE, "error": "…", "step": "step 3 (map)", "record": …, "counts": …}

``out`` holds the records the input record became (none when a step dropped
it, several after ``expand``); ``counts`` the records in and out of each step
of the stage, for the summary. The first stage reads the pipeline's source
(``SOURCE_LINE`` is then the record's own line); later stages read the file
of the stage before.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from .. import ast
from ..pipeline_steps import Part, PipelineSpec, read_pipeline, segments
from ..runtime.budget import BudgetExceeded
from ..runtime.evaluate import Evaluator, truthy
from ..runtime.outputs import to_jsonable
from ..runtime.run import RunState
from ..runtime.usage import Usage
from .batch import BatchSink, close_options, counting, job_options, job_program
from .records import DataError, Outcome, Record, describe_error

SOURCE_STEP = "source"


@dataclass(frozen=True)
class PipelineJob:
    """One stage of per-record steps: plain data, so that Dask workers can open it."""

    flow_file: str
    pipeline: str
    flow_hash: str
    stage: int                                  # index into pipeline_stages(spec)
    pins: tuple[tuple[str, int], ...] = ()
    model: str | None = None
    cache: bool = True
    workdir: str = "."
    models: tuple[tuple[str, str], ...] = ()  # declared models replaced for the run (--model NAME=…)
    budget: float | None = None              # USD left for the run (split among the processes)
    program: Any = field(default=None, compare=False, repr=False)  # already loaded here; never sent

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "program": None}

    async def open(self, share: int) -> "PipelineRunner":
        program = job_program(self, "pipeline")
        return PipelineRunner(program, pipeline_spec(program, self.pipeline), self.stage, job_options(self, share))


def pipeline_spec(program, name: str) -> PipelineSpec:
    decl = next((d for d in program.ctx.module.decls if isinstance(d, ast.PipelineDecl) and d.name == name), None)
    if decl is None:
        raise DataError(f"no pipeline '{name}' in {program.path}")
    return read_pipeline(decl)


def pipeline_stages(spec: PipelineSpec) -> list[tuple[str, list[Part]]]:
    """The stages of a pipeline; the first always reads the source record by record."""
    stages = segments(spec.steps)
    if not stages or stages[0][0] != "records":
        stages.insert(0, ("records", []))
    return stages


def record_type(program, spec: PipelineSpec, stage_index: int):
    """The type of the records a stage receives (the checker stored each part's result type)."""
    types = program.ctx.expr_types
    stages = pipeline_stages(spec)
    before = [step for _, steps in stages[:stage_index] for step in steps]
    return types[id(before[-1].call)] if before else types[id(spec.source.call)]


class PipelineRunner:
    """Runs one stage's steps on one input line; every failure becomes an error line."""

    def __init__(self, program, spec: PipelineSpec, stage: int, options) -> None:
        self.program = program
        self.spec = spec
        self.steps = pipeline_stages(spec)[stage][1]
        self.first = stage == 0
        self.in_type = record_type(program, spec, stage)
        self.options = options

    async def __call__(self, record: Record) -> Outcome:
        usage = Usage()
        state = self._state(usage)
        line = record.line if self.first else record.value["line"]
        values = [record.value] if self.first else record.value["out"]
        counts = [[0, 0] for _ in self.steps]
        current: Any = None
        try:
            what = f"record {line}" if self.first else f"a record of line {line}"
            records = [state.validate(self.in_type, value, what) for value in values]
        except Exception as error:
            return Outcome(record.line, {"line": line, "error": describe_error(error), "step": SOURCE_STEP,
                                         "record": values[0] if values else None, "counts": counts}, usage=usage)
        for i, step in enumerate(self.steps):
            counts[i][0] = len(records)
            kept = []
            for current in records:
                try:
                    kept.extend(await apply_step(state, self.spec.decl, step, current))
                except asyncio.CancelledError:
                    raise
                except BudgetExceeded as error:  # no record starts after this one; --resume runs it again
                    return Outcome(record.line, error=describe_error(error), usage=usage, stopped=True)
                except Exception as error:  # the record failed, the pipeline goes on
                    return Outcome(record.line, {"line": line, "error": describe_error(error), "step": step.label(),
                                                 "record": to_jsonable(current), "counts": counts}, usage=usage)
            counts[i][1] = len(kept)
            records = kept
        return Outcome(record.line, {"line": line, "out": [to_jsonable(r) for r in records], "counts": counts},
                       usage=usage)

    def _state(self, usage):
        return RunState(self.program, counting(self.options, usage))

    async def close(self) -> None:
        await close_options(self.options)


async def apply_step(state, decl: ast.PipelineDecl, step: Part, record: Any) -> list[Any]:
    """What a per-record step makes of one record: none, the record itself, or new records."""
    evaluator = Evaluator(state, decl, {"record": record})
    if step.kind in ("keep", "drop"):
        keep = truthy(await evaluator.eval(step.args["condition"]))
        return [record] if keep == (step.kind == "keep") else []
    if step.kind == "map":
        return [await _mapped(state, evaluator, decl, step.args["value"], record)]
    if step.kind == "expand":
        values = await _mapped(state, evaluator, decl, step.args["values"], record)
        if not isinstance(values, (list, tuple)):
            raise DataError(f"expand(…) gave {type(values).__name__}, not a list")
        return list(values)
    raise DataError(f"'{step.kind}' is not a per-record step")


async def _mapped(state, evaluator, decl: ast.PipelineDecl, value: ast.Node, record: Any) -> Any:
    """``map(f)`` calls f with the record; ``map(EXPR)`` evaluates the expression."""
    if isinstance(value, ast.Name) and value.id != "record" and value.version is None:
        callee = state.program.lookup(value.id, None, within=decl)
        if callee is not None:
            return await state.call(callee, [None], [record])
    return await evaluator.eval(value)


class StageSink(BatchSink):
    """A stage's file: one JSON line per input line, in input order (see the module docstring)."""

    def write(self, outcome: Outcome) -> bool:
        data = outcome.output
        if outcome.error is not None:  # the source could not read the record (invalid JSON…)
            data = {"line": outcome.line, "error": outcome.error, "step": SOURCE_STEP, "counts": []}
        try:
            text = json.dumps(data, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as error:  # NaN, or a value JSON cannot hold
            data = {"line": data["line"], "error": f"the record cannot be written as JSON: {error}",
                    "step": data.get("step", SOURCE_STEP), "counts": data.get("counts", [])}
            text = json.dumps(data, ensure_ascii=False)
        self.file.write((text + "\n").encode("utf-8"))
        return "error" not in data
