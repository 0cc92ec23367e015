"""`fmflow eval`: every variant of an eval on every record, then every metric on every output.

Running: each variant runs as a data job of its own (fmflow.data's driver,
local engine and checkpoints), all variants at once in one event loop, so
the models' `concurrency` and `rate` hold across all of them. Outputs go to
``.fmflow/evals/<eval>/<variant>.jsonl`` beside a checkpoint whose identity
is the flow, a hash of the program without its `eval` declarations, the
dataset's hash and the variant. A later `fmflow eval` with the same identity
continues from the checkpoint: a killed eval resumes, a finished one runs no
flow again, and editing the metrics (which changes only the eval declaration)
re-scores the stored outputs without a model call. Under the outputs, model
replies go through the response cache as in every run.

Scoring: each metric is evaluated on each record a variant answered, with
``record`` and ``output`` bound; judges (prompts or flows called in a metric)
run through one RunState with the response cache and, with ``trace``, a
trace of their own.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from ..data.batch import BatchSink, checked_models, checkpoint_path, model_text, start_output
from ..data.checkpoint import Checkpoint
from ..data.driver import Driver
from ..data.local import LocalEngine, run_records
from ..data.records import DataError, Outcome, Record, describe_error
from ..data.sinks import LineFile, open_lines
from ..data.sources import open_source
from ..runtime import run_flow
from ..runtime.budget import BudgetExceeded
from ..runtime.usage import Usage
from .plan import EvalError, EvalPlan, Metric, Variant, program_hash, read_plan

DEFAULT_CONCURRENCY = 16
STORE_FOLDER = os.path.join(".fmflow", "evals")
NOT_RUN = "not run: the budget was reached (run the eval again with a larger --budget)"


@dataclass
class Row:
    """One variant on one record: the flow's output or error, then the metrics' values or errors."""

    line: int
    output: Any = None
    error: str | None = None
    seconds: float = 0.0
    usage: Usage = field(default_factory=Usage)
    metrics: dict[str, float] = field(default_factory=dict)        # bool metrics as 1.0 / 0.0
    metric_errors: dict[str, str] = field(default_factory=dict)


@dataclass
class VariantRun:
    variant: Variant
    rows: dict[int, Row]
    ran: int                 # records whose flow ran in this invocation (the others were stored)
    output_file: str
    not_run: int = 0         # records left for the next invocation: the budget was reached


@dataclass
class EvalRun:
    """Everything `fmflow eval` computed, before the statistics."""

    plan: EvalPlan
    path: str
    records: dict[int, Any]
    variants: list[VariantRun]
    seconds: float
    scoring_usage: Usage


# ------------------------------------------------------------------ running

def run_eval(path: str, **options: Any) -> EvalRun:
    """Run an eval of a flow file (see ``arun_eval`` for the options)."""
    return asyncio.run(arun_eval(path, **options))


async def arun_eval(path: str, name: str | None = None, *, cache: bool = True, trace: bool = False,
                    concurrency: int = DEFAULT_CONCURRENCY, workdir: str = ".", program=None,
                    on_record: Callable[[str, int], None] | None = None,
                    budget: float | None = None, model: str | None = None,
                    models: dict[str, str] | None = None) -> EvalRun:
    """Run every variant of eval ``name`` on every record, then score the outputs.

    ``cache=False`` runs everything again (no stored outputs, no response
    cache). ``on_record(variant, line)`` is called as each record finishes.
    ``budget``: USD the model calls of this invocation may cost, judges
    included (``--budget``); records it leaves are run by the next invocation.
    ``model`` answers prompts that name none and ``models`` replaces declared models
    ({"fast": "ollama:llama3.2"}) for the whole eval: the flow, the `models:` variant of that
    name and the judges. Outputs stored under other models are not used again.
    """
    from ..providers import release_loop_resources
    from ..runtime import RunOptions, open_cache
    from ..runtime.budget import Budget

    started = time.monotonic()
    if concurrency < 1:
        raise DataError(f"concurrency must be at least 1, got {concurrency}")
    program = program if program is not None else _load(path)
    plan = read_plan(program, name)
    flow = program.lookup(plan.flow)
    params = program.signature(flow)[0]
    source = open_source(plan.dataset.path, dict(params))
    store = os.path.join(workdir, STORE_FOLDER, plan.name)
    os.makedirs(store, exist_ok=True)
    identity = {"job": "eval", "eval": plan.name, "flow": plan.flow, "program": program_hash(program),
                "dataset": source.scan().sha256}
    chosen = model_text(model, checked_models(program, models))
    if chosen is not None:   # only then: the outputs stored without --model stay valid
        identity["model"] = chosen
    shared = RunOptions(cache=cache, trace=trace, workdir=workdir, budget=Budget.of(budget), model=model,
                        models=models or None)
    shared.shared_cache = open_cache(shared)
    try:
        runs = await asyncio.gather(*(
            _run_variant(path, program, plan, variant, source, params, store, identity, shared,
                         concurrency, on_record)
            for variant in plan.variants))
        records = {r.line: r.value for r in source.records() if r.error is None}
        scoring = await _score(program, plan, runs, records, shared, concurrency)
    finally:
        if shared.shared_cache is not None:
            shared.shared_cache.close()
        await release_loop_resources()
    return EvalRun(plan, path, records, list(runs), time.monotonic() - started, scoring)


def _load(path: str, pins: dict[str, int] | None = None):
    from ..data.batch import load_checked
    from ..errors import FmflowCheckError

    try:
        with warnings.catch_warnings():  # the eval itself names the versions it pins: that is no surprise
            warnings.filterwarnings("ignore", message=r"pins\[", category=UserWarning)
            return load_checked(path, pins)
    except FmflowCheckError as error:
        if not pins:
            raise
        pinned = ", ".join(f"{name}@{version}" for name, version in pins.items())
        raise EvalError(f"with {pinned} the flow has errors: {error}") from None


async def _run_variant(path, program, plan: EvalPlan, variant: Variant, source, params, store: str,
                       identity: dict, shared, concurrency: int, on_record) -> VariantRun:
    from ..runtime import SharedModels

    if variant.pins:
        program = _load(path, dict(variant.pins))
    output = os.path.join(store, _slug(variant.label) + ".jsonl")
    identity = {**identity, "variant": variant.label}
    checkpoint, file = _open_store(output, identity, reuse=shared.cache)
    options = _copy(shared, every_model=variant.model, shared_models=SharedModels())
    done_before = checkpoint.progress.totals.get("ok", 0) + checkpoint.progress.totals.get("failed", 0)
    driver = Driver(_EvalSink(file, variant.label, on_record), checkpoint, window=max(100 * concurrency, 10_000))
    job = _EvalJob(program, program.lookup(plan.flow), tuple(name for name, _ in params), options)
    try:
        totals = await driver.run(LocalEngine(concurrency), job, source.records(checkpoint.progress.skipper()),
                                  stop_error=NOT_RUN)
    finally:
        file.close()
        checkpoint.close()
    rows = read_rows(output)
    if driver.unfinished:  # the records the budget left are no results: the next invocation runs them
        for line in list(rows)[-driver.unfinished:]:
            del rows[line]
    return VariantRun(variant, rows, totals.done - done_before - driver.unfinished, output, driver.unfinished)


def _open_store(output: str, identity: dict, reuse: bool):
    """The checkpoint and output file of a variant: continued when the identity matches, else fresh."""
    path = checkpoint_path(output)
    if reuse and os.path.exists(path) and os.path.exists(output):
        try:
            checkpoint = Checkpoint.load(path)
        except DataError:
            checkpoint = None
        if checkpoint is not None:
            if checkpoint.identity == identity:
                try:
                    return checkpoint, open_lines(output, checkpoint.progress.position.get("output", 0))
                except DataError:
                    pass
            checkpoint.close()
    return start_output(output, identity)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", label.replace("@", "-v"))


def _copy(options, **changes):
    copy = object.__new__(type(options))
    copy.__dict__.update(options.__dict__)
    copy.__dict__.update(changes)
    return copy


class _EvalJob:
    """Runs the flow of one variant on one record (the record's extra fields are not inputs)."""

    def __init__(self, program, flow, inputs: tuple[str, ...], options) -> None:
        self.program, self.flow, self.inputs, self.options = program, flow, inputs, options

    async def open(self, share: int) -> "_EvalJob":
        return self

    async def close(self) -> None:
        pass

    async def __call__(self, record: Record) -> Outcome:
        usage = Usage()
        started = time.perf_counter()
        value = record.value
        try:
            if not isinstance(value, dict):
                raise DataError(f"line {record.line} is not a JSON object")
            inputs = {k: v for k, v in value.items() if k in self.inputs}
            result = await run_flow(self.program, self.flow, inputs, _copy(self.options, on_usage=usage.add_answer))
        except asyncio.CancelledError:
            raise
        except BudgetExceeded as error:  # no record starts after this one; the next invocation runs them
            return Outcome(record.line, error=describe_error(error), usage=usage, stopped=True)
        except Exception as error:  # the record failed; the eval counts it and goes on
            return Outcome(record.line, output=time.perf_counter() - started, error=describe_error(error),
                           usage=usage)
        return Outcome(record.line, output=(result.data, time.perf_counter() - started), usage=usage)


class _EvalSink(BatchSink):
    """A variant's stored outputs: one JSON line per record, with its latency and usage."""

    def __init__(self, file: LineFile, label: str, on_record) -> None:
        super().__init__(file)
        self.label, self.on_record = label, on_record

    def write(self, outcome: Outcome) -> bool:
        u = outcome.usage or Usage()
        data: dict[str, Any] = {"line": outcome.line,
                                "usage": [u.calls, u.cached, u.tokens_in, u.tokens_out, u.cost]}
        ok = outcome.error is None
        if ok:
            data["output"], data["seconds"] = outcome.output
        else:
            data["error"] = outcome.error
            data["seconds"] = outcome.output if isinstance(outcome.output, float) else 0.0
        try:
            text = json.dumps(data, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as error:  # NaN, or a value JSON cannot hold
            data.pop("output", None)
            data["error"], ok = f"the output cannot be written as JSON: {error}", False
            text = json.dumps(data, ensure_ascii=False)
        self.file.write((text + "\n").encode("utf-8"))
        if self.on_record is not None:
            self.on_record(self.label, outcome.line)
        return ok


def read_rows(path: str) -> dict[int, Row]:
    """The stored rows of a variant (a torn last line, from a kill, is left out)."""
    rows: dict[int, Row] = {}
    with open(path, "rb") as f:
        for raw in f:
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            calls, cached, tokens_in, tokens_out, cost = data.get("usage") or [0, 0, 0, 0, 0.0]
            rows[data["line"]] = Row(data["line"], data.get("output"), data.get("error"), data.get("seconds", 0.0),
                                     Usage(calls, cached, tokens_in, tokens_out, cost))
    return rows


# ------------------------------------------------------------------ scoring

async def _score(program, plan: EvalPlan, runs, records: dict[int, Any], shared, concurrency: int) -> Usage:
    """Every metric on every answered record of every variant; the judges' usage."""
    from ..runtime import RunState, SharedModels
    from .metrics import MetricEvaluator, Similarity

    usage = Usage()
    options = _copy(shared, every_model=None, shared_models=SharedModels(), on_usage=usage.add_answer)
    state = RunState(program, options)  # options.shared_cache: the eval's response cache
    trace = _judge_trace(program, plan, state) if shared.trace else None
    state.trace = trace
    similarity = Similarity(os.path.dirname(os.path.abspath(program.path)))

    rows = iter([row for run in runs for row in run.rows.values() if row.error is None and row.line in records])

    async def next_row() -> Row | None:
        return next(rows, None)

    async def score(row: Row) -> None:
        evaluator = MetricEvaluator(state, plan.decl, {"record": records[row.line], "output": row.output},
                                    similarity=similarity)
        for metric in plan.metrics:
            await _score_metric(evaluator, metric, row)

    try:
        await run_records(score, next_row, lambda _scored: None, concurrency)
    finally:
        if trace is not None:
            trace.close("ok")
    return usage


async def _score_metric(evaluator, metric: Metric, row: Row) -> None:
    from ..runtime.errors import FlowRuntimeError

    try:
        value = await evaluator.eval(metric.expr)
    except asyncio.CancelledError:
        raise
    except FlowRuntimeError as error:
        row.metric_errors[metric.name] = error.cause
        return
    except Exception as error:
        row.metric_errors[metric.name] = describe_error(error)
        return
    if metric.rate and isinstance(value, bool):
        row.metrics[metric.name] = 1.0 if value else 0.0
    elif not metric.rate and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value):
        row.metrics[metric.name] = float(value)
    else:
        wanted = "true or false" if metric.rate else "a finite number"
        row.metric_errors[metric.name] = f"gave {value!r}, not {wanted}"


def _judge_trace(program, plan: EvalPlan, state):
    from ..observe.trace import TraceWriter

    return TraceWriter(os.path.join(state.options.workdir, ".fmflow", "runs"), secrets=state.secrets,
                       flow=f"eval {plan.name}", file=program.path, to_jsonable=program.types.to_jsonable)


__all__ = ["EvalError", "EvalRun", "Row", "VariantRun", "arun_eval", "read_rows", "run_eval"]
