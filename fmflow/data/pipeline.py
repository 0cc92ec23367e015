"""`fmflow pipeline`: a `pipeline` declaration run from its source to its sink, exactly once.

A pipeline runs as a chain of stages (see ``pipeline_stages``): runs of
per-record steps (keep, drop, map, expand) go through the data engine like a
batch (driver.py, on the local or the Dask engine, checkpointed record by
record); a step that needs every record (dedupe, sample, embed) runs here
over the stage before (pipeline_whole.py). Each stage writes a file in the
sink's work folder, ``SINK.fmflow-work/``, whose ``state.json`` records which
stages are complete (and the pipeline's identity: its files, its input and
options). When all are, the sink and ``SINK.errors.jsonl`` are written from
those files (pipeline_io.py) and the work folder is removed.

After a crash or a kill, ``resume=True`` skips the complete stages, continues
the interrupted one from its checkpoint, and goes on; each stage's file, and
so the sink, holds each surviving record exactly once. Records keep source
order throughout, so the output does not depend on the engine or on timing.

With a budget (``--budget``), a stage whose next model call would pass it
stops like an interrupted one (its records left lie after its last commit;
a whole-data step simply stops) and the run ends there without a sink;
``resume=True`` with a larger budget continues from the same point.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

from .. import ast
from ..pipeline_steps import PipelineSpec, read_pipeline
from ..runtime.usage import Usage
from .batch import (DEFAULT_CONCURRENCY, budget_stop_error, checked_models, checkpoint_path, close_options, counting,
                    flow_hash, job_options, load_checked, make_engine, model_text)
from .checkpoint import Checkpoint, _lock
from .driver import Driver, Totals
from .pipeline_io import FilesSource, stage_counts, write_errors, write_sink
from .pipeline_records import SOURCE_STEP, PipelineJob, StageSink, pipeline_stages, record_type
from .pipeline_whole import WholeStep, stage_records
from .records import DataError
from .sinks import LineFile, open_lines
from .sources import CsvSource, JsonlSource, ParquetSource, Source

WORK_SUFFIX = ".fmflow-work"


@dataclass
class StepCount:
    step: str
    records_in: int
    records_out: int


@dataclass
class PipelineResult:
    pipeline: str
    sink: str
    read: int                    # records read from the source
    written: int                 # records in the sink
    failed: int                  # records in SINK.errors.jsonl
    steps: list[StepCount]
    usage: Usage
    seconds: float
    engine: str
    resumed: bool = False
    discarded: bool = False      # an unfinished run was there and was started over
    errors_file: str | None = None
    budget: float | None = None  # --budget, in USD, for the whole run (resumed runs included)
    stopped: "BudgetStop | None" = None  # the budget was reached: nothing written, --resume continues


@dataclass
class BudgetStop:
    """Where the budget stopped a run: the steps it stopped in and the records they did not run."""

    steps: str                   # "step 1 (map)", or the steps of the stage
    not_run: int                 # source records the stage left (all of them for a whole-data step)
    usage: Usage = field(default_factory=Usage)  # what the stopped stage of records spent (not in the state)


@dataclass
class _State:
    """``state.json`` of the work folder: the pipeline's identity and its complete stages."""

    path: str
    identity: dict[str, Any]
    done: int = 0
    counts: dict[str, list[int]] = field(default_factory=dict)   # whole stage → [in, out]
    usage: dict[str, dict] = field(default_factory=dict)         # stage → its Totals (model usage and cost)

    def save(self) -> None:
        temporary = self.path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump({"identity": self.identity, "done": self.done, "counts": self.counts, "usage": self.usage}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)


def run_pipeline(flow_file: str, name: str | None = None, **options: Any) -> PipelineResult:
    """Run pipeline ``name`` of ``flow_file`` (see ``arun_pipeline``); scripts using the Dask engine
    without a scheduler need an ``if __name__ == "__main__":`` guard."""
    return asyncio.run(arun_pipeline(flow_file, name, **options))


async def arun_pipeline(flow_file: str, name: str | None = None, *, resume: bool = False, limit: int | None = None,
                        engine: str = "local", scheduler: str | None = None,
                        concurrency: int = DEFAULT_CONCURRENCY, cache: bool = True, model: str | None = None,
                        models: dict[str, str] | None = None, pins: dict[str, int] | None = None,
                        workdir: str = ".", program=None, partition_size: int | None = None,
                        budget: float | None = None) -> PipelineResult:
    """Run a pipeline into its sink. ``resume`` continues an interrupted run; ``limit`` takes the
    first N source records; ``engine`` is "local" or "dask" (on ``scheduler`` or a local cluster).
    ``models`` replaces declared models ({"fast": "ollama:llama3.2"}). ``budget``: USD the model calls
    of the whole run may cost (a resumed run counts what was spent before); once reached, no record
    starts, nothing is written, and ``resume`` (with a larger budget) runs the records left."""
    started = time.monotonic()
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be at least 1, got {limit}")
    runner_engine = make_engine(engine, concurrency, scheduler, partition_size)
    program = program if program is not None else load_checked(flow_file, pins)
    spec = read_pipeline(_pipeline_of(program, name))
    paths = await _paths(program, spec, workdir)
    source = _open_source(program, spec, paths["source"], os.path.dirname(os.path.abspath(flow_file)))
    job = PipelineJob(os.path.abspath(flow_file), spec.decl.name, flow_hash(program),
                      0, tuple(sorted((pins or {}).items())), model, cache, os.path.abspath(workdir),
                      checked_models(program, models), program=program)
    identity = {"job": "pipeline", "pipeline": job.pipeline, "flow_hash": job.flow_hash,
                "input_hash": source.scan().sha256, "limit": limit, "pins": [list(p) for p in job.pins],
                "model": model_text(model, job.models)}
    work = paths["sink"] + WORK_SUFFIX
    state, lock, discarded = _open_work(work, identity, resume, paths["sink"])
    try:
        async with runner_engine:
            stop = await _run_stages(runner_engine, program, spec, job, source, limit, state, work, concurrency,
                                     budget)
        if stop is not None:
            return _stopped(spec, state, paths["sink"], runner_engine.name, started, resume, discarded, budget, stop)
        return _finish(program, spec, state, work, paths["sink"], runner_engine.name, started, resume, discarded,
                       budget)
    finally:
        lock.close()


def _pipeline_of(program, name: str | None) -> ast.PipelineDecl:
    pipelines = [d for d in program.ctx.module.decls if isinstance(d, ast.PipelineDecl)]
    names = ", ".join(p.name for p in pipelines)
    if name is None:
        if len(pipelines) == 1:
            return pipelines[0]
        if not pipelines:
            raise DataError(f"{program.path} declares no pipeline")
        raise DataError(f"{program.path} declares several pipelines ({names}); choose one with --name")
    for pipeline in pipelines:
        if pipeline.name == name:
            return pipeline
    raise DataError(f"no pipeline '{name}' in {program.path} (pipelines: {names or 'none'})")


async def _paths(program, spec: PipelineSpec, workdir: str) -> dict[str, str]:
    """The source and sink paths (evaluated: `env(…)` may be in them), relative to the pipeline's file."""
    from ..runtime import RunOptions
    from ..runtime.evaluate import Evaluator
    from ..runtime.run import RunState

    state = RunState(program, RunOptions(cache=False, trace=False, workdir=workdir))
    base = program.folder_of(spec.decl)
    paths = {}
    for key, part in (("source", spec.source), ("sink", spec.sink)):
        value = await Evaluator(state, spec.decl).eval(part.args.get("path", part.args.get("glob")))
        paths[key] = os.path.join(base, value)
    return paths


_SOURCES = {"jsonl": JsonlSource, "csv": CsvSource, "parquet": ParquetSource}


def _open_source(program, spec: PipelineSpec, path: str, base: str) -> Source:
    kind = spec.source.kind
    if kind == "files":
        return FilesSource(path, base)
    if not os.path.isfile(path):
        raise DataError(f"cannot read the source of pipeline '{spec.decl.name}': '{path}' "
                        f"{'is not a file' if os.path.exists(path) else 'does not exist'}")
    struct = program.ctx.expr_types.get(id(spec.source.call))
    fields = program.resolver_for_fields(struct) if hasattr(struct, "fields") else {}
    source = _SOURCES[kind](path, fields)
    source.check()
    return source


# ------------------------------------------------------------- work folder

def _open_work(work: str, identity: dict[str, Any], resume: bool, sink: str):
    """(state, lock, discarded): the state to continue (resume) or a fresh one."""
    state_path = os.path.join(work, "state.json")
    if resume:
        if not os.path.isfile(state_path):
            raise DataError(f"there is no unfinished run of pipeline '{identity['pipeline']}' to resume "
                            f"('{work}' does not exist): run it without --resume")
        lock = _lock(os.path.join(work, "lock"))
        try:
            with open(state_path, encoding="utf-8") as f:
                saved = json.load(f)
            _check_same_pipeline(saved["identity"], identity)
        except (ValueError, KeyError) as error:
            lock.close()
            raise DataError(f"'{state_path}' cannot be read ({error}); run without --resume to start over") from None
        except BaseException:
            lock.close()
            raise
        return _State(state_path, identity, saved["done"], saved["counts"], saved["usage"]), lock, False
    discarded = os.path.isdir(work)
    if discarded:
        lock = _lock(os.path.join(work, "lock"))  # refuses while another run holds it
        lock.close()
        shutil.rmtree(work)
    try:
        os.makedirs(work)  # and the sink's folder, when it is missing
    except OSError as error:
        raise DataError(f"cannot write beside the sink '{sink}': {error.strerror or error}") from None
    lock = _lock(os.path.join(work, "lock"))
    state = _State(state_path, identity)
    state.save()
    return state, lock, discarded


def _check_same_pipeline(saved: dict[str, Any], current: dict[str, Any]) -> None:
    restart = "; run without --resume to start over"
    reasons = {"pipeline": f"the unfinished run is of pipeline '{saved.get('pipeline')}'",
               "flow_hash": "the pipeline's file or a file it imports changed since the run started",
               "input_hash": "the source changed since the run started",
               "limit": f"the run started with --limit {saved.get('limit')}",
               "pins": "the run started with other --pin options",
               "model": "the run started with another --model"}
    for key, reason in reasons.items():
        if saved.get(key) != current.get(key):
            raise DataError(reason + restart)


def stage_path(work: str, index: int) -> str:
    return os.path.join(work, f"stage-{index}.jsonl")


# ------------------------------------------------------------------ stages

async def _run_stages(engine, program, spec, job: PipelineJob, source: Source, limit, state: _State, work: str,
                      concurrency: int, budget: float | None) -> BudgetStop | None:
    """Run the stages not done yet; a BudgetStop when the budget stopped one (it stays not done)."""
    for index, (kind, steps) in enumerate(pipeline_stages(spec)):
        if index < state.done:
            continue
        target = stage_path(work, index)
        left = None if budget is None else max(0.0, budget - _spent(state))
        stage_job = PipelineJob(**{**job.__dict__, "stage": index, "budget": left})
        if kind == "records":
            records = _source_records(source, limit) if index == 0 else _stage_input(stage_path(work, index - 1))
            driver = await _run_record_stage(engine, stage_job, records, target, concurrency, budget)
            if driver.stopping:
                state.save()
                return BudgetStop(", ".join(step.label() for step in steps) or SOURCE_STEP, driver.unfinished,
                                  driver.totals.usage)
            state.usage[str(index)] = driver.totals.to_data()
        else:
            stop = await _run_whole_stage(program, spec, stage_job, steps[0], state, work)
            if stop is not None:
                return stop
        state.done = index + 1
        state.save()
        if os.path.exists(checkpoint_path(target)):
            os.remove(checkpoint_path(target))
    return None


def _spent(state: _State) -> float:
    """USD spent by the stages done, and by the attempts at whole-data steps a budget stopped."""
    return sum(Totals.from_data(data).usage.cost for data in state.usage.values())


def _source_records(source: Source, limit: int | None):
    def records(skip):
        if limit is None:
            yield from source.records(skip)
            return
        for count, record in enumerate(source.records(), 1):
            if count > limit:
                return
            if not skip(record.line):
                yield record
    return records


def _stage_input(path: str):
    def records(skip):
        for record in JsonlSource(path).records(skip):
            if record.error is not None or record.value.get("out"):
                yield record
    return records


async def _run_record_stage(engine, job: PipelineJob, records, target: str, concurrency: int,
                            budget: float | None) -> Driver:
    """Run a stage of per-record steps to its end, or until the budget stops it (``driver.stopping``:
    the records it left are written after the last commit, so a resumed stage runs them again)."""
    checkpoint, file = _open_stage(target)
    if job.budget is not None:   # what this stage spent before it was interrupted counts too
        spent_here = float(checkpoint.progress.totals.get("cost", 0.0))
        job = PipelineJob(**{**job.__dict__, "budget": max(0.0, job.budget - spent_here)})
    driver = Driver(StageSink(file), checkpoint, ordered=True, window=max(16 * concurrency, 1024))
    try:
        await driver.run(engine, job, records(checkpoint.progress.skipper()), stop_error=budget_stop_error(budget))
    finally:
        file.close()
        checkpoint.close()
    return driver


def _open_stage(target: str) -> tuple[Checkpoint, LineFile]:
    """The stage file and its checkpoint: continued where the last commit left it, or new."""
    path = checkpoint_path(target)
    if os.path.exists(path) and os.path.exists(target):
        checkpoint = Checkpoint.load(path)
        try:
            return checkpoint, open_lines(target, checkpoint.progress.position.get("output", 0))
        except BaseException:
            checkpoint.close()
            raise
    checkpoint = Checkpoint.create(path, {"job": "pipeline-stage"})
    return checkpoint, LineFile(target)


async def _run_whole_stage(program, spec, job: PipelineJob, step, state: _State, work: str) -> BudgetStop | None:
    """A whole-data step; its model calls count into the stage's usage, kept when the budget stops it
    (the step is then done again from the start by a resumed run)."""
    from ..runtime.budget import BudgetExceeded

    index = job.stage
    source = stage_path(work, index - 1)
    usage = Usage()
    try:
        counts = await asyncio.to_thread(_run_whole_step, program, spec, job, step, source, stage_path(work, index),
                                         usage)
    except BudgetExceeded:
        return BudgetStop(step.label(), sum(1 for _ in stage_records(source)))
    finally:
        before = Totals.from_data(state.usage.get(str(index), {}))
        before.usage.add(usage)
        state.usage[str(index)] = before.to_data()
        state.save()
    state.counts[str(index)] = list(counts)
    return None


def _run_whole_step(program, spec, job: PipelineJob, step, source: str, target: str, usage: Usage):
    """A whole-data step in an event loop of its own, in a worker thread: the job's loop stays free
    (a Dask client answers its heartbeats while the step embeds or compares texts)."""
    from ..runtime.run import RunState

    async def run():
        options = job_options(job, share=1)
        try:
            whole = WholeStep(RunState(program, counting(options, usage)), spec.decl, step,
                              record_type(program, spec, job.stage), job.workdir)
            return await whole.run(source, target)
        finally:
            await close_options(options)

    return asyncio.run(run())


# ------------------------------------------------------------------ finish

def _finish(program, spec: PipelineSpec, state: _State, work: str, sink: str, engine: str, started: float,
            resumed: bool, discarded: bool, budget: float | None) -> PipelineResult:
    stages = pipeline_stages(spec)
    files = [stage_path(work, i) for i in range(len(stages))]
    final = program.ctx.expr_types.get(id(spec.steps[-1].call)) if spec.steps else \
        program.ctx.expr_types.get(id(spec.source.call))
    fields = list(program.resolver_for_fields(final)) if hasattr(final, "fields") else None
    written = write_sink(spec.sink.kind, sink, files[-1], fields)
    failed = write_errors(sink, files)
    steps, read = _step_counts(stages, state, files)
    shutil.rmtree(work, ignore_errors=True)
    return PipelineResult(spec.decl.name, sink, read, written, failed, steps, _usage(state), time.monotonic() - started,
                          engine, resumed, discarded, (sink + ".errors.jsonl") if failed else None, budget)


def _stopped(spec: PipelineSpec, state: _State, sink: str, engine: str, started: float, resumed: bool,
             discarded: bool, budget: float | None, stop: BudgetStop) -> PipelineResult:
    """The result of a run the budget stopped: nothing written; the work folder stays for --resume."""
    usage = _usage(state)
    usage.add(stop.usage)
    return PipelineResult(spec.decl.name, sink, 0, 0, 0, [], usage, time.monotonic() - started, engine, resumed,
                          discarded, None, budget, stop)


def _usage(state: _State) -> Usage:
    usage = Usage()
    for data in state.usage.values():
        usage.add(Totals.from_data(data).usage)
    return usage


def _step_counts(stages, state: _State, files: list[str]) -> tuple[list[StepCount], int]:
    counts: list[StepCount] = []
    read = sum(1 for _ in open(files[0], "rb"))
    for index, (kind, steps) in enumerate(stages):
        if kind == "records":
            totals = stage_counts(files[index], len(steps))
        else:
            totals = [state.counts.get(str(index), [0, 0])]
        counts.extend(StepCount(step.label(), into, out) for step, (into, out) in zip(steps, totals))
    return counts, read


def summary(result: PipelineResult) -> str:
    """The lines printed after a run: records in and out of each step, the sink, the errors."""
    if result.stopped is not None:
        return _stopped_summary(result)
    lines = [f"pipeline {result.pipeline}: {result.read} record{'s' if result.read != 1 else ''} read"]
    width = max((len(s.step) for s in result.steps), default=0)
    for step in result.steps:
        lines.append(f"  {step.step:<{width}}  {step.records_in:>8} in  {step.records_out:>8} out")
    lines.append(f"  wrote {result.written} to {result.sink}")
    if result.failed:
        lines.append(f"  {result.failed} failed: see {result.errors_file}")
    u = result.usage
    if u.calls:
        lines.append(_usage_line(u))
    if result.budget is not None:
        lines.append(f"  budget: ${u.cost:.4f} of ${result.budget:.4f} spent")
    lines.append(f"  {result.seconds:.1f}s on the {result.engine} engine")
    return "\n".join(lines)


def _stopped_summary(result: PipelineResult) -> str:
    stop, u = result.stopped, result.usage
    lines = [f"pipeline {result.pipeline}: stopped by the budget in {stop.steps}",
             f"  budget: ${u.cost:.4f} of ${result.budget or 0:.4f} spent; reached: {stop.not_run} "
             f"record{'s' if stop.not_run != 1 else ''} were not run (continue with --resume and a larger --budget)",
             f"  {result.sink} was not written; what ran is kept for --resume"]
    if u.calls:
        lines.append(_usage_line(u))
    lines.append(f"  {result.seconds:.1f}s on the {result.engine} engine")
    return "\n".join(lines)


def _usage_line(u: Usage) -> str:
    return (f"  model calls {u.calls} ({u.cached} cached), tokens {u.tokens_in} in / {u.tokens_out} out, "
            f"cost ${u.cost:.4f}")
