"""`fmflow batch`: one run of a flow per input record, each written exactly once to a JSONL output.

The output has one line per input record, `{"line": N, "output": …}` or
`{"line": N, "error": "…"}`. Beside it, ``OUTPUT.fmflow-checkpoint`` (SQLite)
records which records are finished, the output's committed length, and what
the batch is (the flow, a hash of its files, a hash of the input), so that
``resume=True`` continues a batch that crashed or was killed, and refuses to
continue one whose flow or input has changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..runtime import RunOptions, SharedModels, open_cache, run_flow
from ..runtime.budget import Budget, BudgetExceeded
from ..runtime.errors import FlowRuntimeError
from ..runtime.models import ModelChoiceError, model_choices, unknown_model_names
from ..runtime.usage import Usage
from .checkpoint import Checkpoint
from .driver import Driver, Totals
from .records import DataError, Outcome, Record, describe_error
from .sinks import LineFile, open_lines
from .sources import open_source

CHECKPOINT_SUFFIX = ".fmflow-checkpoint"
DEFAULT_CONCURRENCY = 16


@dataclass
class BatchResult:
    """What a batch did; the counts cover the whole output, resumed runs included."""

    output: str
    records: int                 # records in the input
    ok: int
    failed: int
    done_before: int             # records finished by earlier runs (resume)
    usage: Usage                 # model calls, cache hits, tokens and cost of the whole output
    seconds: float               # wall time of this run
    engine: str
    budget: float | None = None  # --budget, in USD, for the whole output
    stopped: int = 0             # records not run because the budget was reached (--resume runs them)

    @property
    def ran(self) -> int:
        return self.ok + self.failed - self.done_before


# ------------------------------------------------------------------ the job

@dataclass(frozen=True)
class BatchJob:
    """The flow to run on each record: plain data, so that Dask workers can open it."""

    flow_file: str                           # absolute path; read again by each worker
    flow: str
    flow_hash: str                           # workers check they loaded the same files
    pins: tuple[tuple[str, int], ...] = ()
    model: str | None = None
    cache: bool = True
    trace: bool = False
    workdir: str = "."
    models: tuple[tuple[str, str], ...] = ()  # declared models replaced for the batch (--model NAME=…)
    budget: float | None = None              # USD left for the whole output (split among the processes)
    program: Any = field(default=None, compare=False, repr=False)  # already loaded here; never sent

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "program": None}

    async def open(self, share: int) -> "FlowRunner":
        return FlowRunner(job_program(self, "batch"), self.flow, job_options(self, share))


def job_program(job, what: str):
    """The checked Program a job runs: the one loaded here, or loaded again (on a Dask worker)
    and checked to hash the same as where the job started."""
    if job.program is not None:
        return job.program
    program = load_checked(job.flow_file, dict(job.pins))
    if flow_hash(program) != job.flow_hash:
        raise DataError(f"'{job.flow_file}' (or a file it imports) here differs from the one the "
                        f"{what} was started with; every machine must see the same flow files")
    return program


def job_options(job, share: int):
    """RunOptions of a job's runner: its records share one open response cache and the models'
    evaluated settings (a model's env() values are read once per runner, not once per record)."""
    # One budget for every record this process runs: each process of a cluster takes its share.
    total = getattr(job, "budget", None)
    budget = Budget(total / share) if total is not None else None
    options = RunOptions(cache=job.cache, trace=getattr(job, "trace", False), workdir=job.workdir,
                         model=job.model, models=dict(getattr(job, "models", ())) or None, limit_share=share,
                         shared_models=SharedModels(), budget=budget)
    options.shared_cache = open_cache(options)
    return options


async def close_options(options) -> None:
    """Release what ``job_options`` opened, and the providers' connections of this loop."""
    from ..providers import release_loop_resources

    if options.shared_cache is not None:
        options.shared_cache.close()
    await release_loop_resources()


class FlowRunner:
    """Runs the flow on one record; every failure becomes an error outcome."""

    def __init__(self, program, flow: str, options) -> None:
        self.program = program
        self.flow = flow
        self.options = options

    async def __call__(self, record: Record) -> Outcome:
        usage = Usage()
        try:
            result = await run_flow(self.program, self.flow, record.value, counting(self.options, usage))
        except asyncio.CancelledError:
            raise
        except BudgetExceeded as error:   # the batch stops starting records; this one runs again on --resume
            return Outcome(record.line, error=describe_error(error), usage=usage, stopped=True)
        except Exception as error:  # the record failed, the batch goes on
            return Outcome(record.line, error=describe_error(error), usage=usage)
        return Outcome(record.line, output=result.data, usage=usage)

    async def close(self) -> None:
        await close_options(self.options)


def counting(options, usage: Usage):
    """A copy of ``options`` whose model answers count into ``usage`` (dataclasses.replace
    costs ten times more, and this runs once per record)."""
    copy = object.__new__(type(options))
    copy.__dict__.update(options.__dict__)
    copy.on_usage = usage.add_answer
    return copy


class BatchSink:
    """The batch's output: one JSON line per record."""

    def __init__(self, file: LineFile) -> None:
        self.file = file

    def write(self, outcome: Outcome) -> bool:
        """Append the outcome's line; False when it is an error line."""
        if outcome.error is None:
            try:
                self.file.write(_line({"line": outcome.line, "output": outcome.output}))
                return True
            except (TypeError, ValueError) as error:  # NaN, or a value JSON cannot hold
                outcome = Outcome(outcome.line, error=f"the output cannot be written as JSON: {error}")
        self.file.write(_line({"line": outcome.line, "error": outcome.error}))
        return False

    def position(self) -> dict[str, int]:
        return {"output": self.file.length}

    def flush(self) -> None:
        self.file.flush()

    def sync(self) -> None:
        self.file.sync()

    def close(self) -> None:
        self.file.close()


def _line(data: dict) -> bytes:
    return (json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


# ------------------------------------------------------------------ loading

def load_checked(path: str, pins: dict[str, int] | None = None):
    """The checked Program of a flow file; FmflowCheckError with every diagnostic when it has errors."""
    from ..api import load_checked as load

    try:
        return load(path, pins=pins)
    except FileNotFoundError:
        raise DataError(f"cannot read '{path}'") from None


def flow_hash(program) -> str:
    """sha256 of the flow file and every .fmflow file it imports (paths relative to its folder)."""
    root = os.path.dirname(os.path.abspath(program.path))
    digest = hashlib.sha256()
    for path, source in sorted(program.loader.sources().items()):
        relative = os.path.relpath(os.path.abspath(path), root)
        digest.update(json.dumps([relative, source.text]).encode("utf-8"))
    return digest.hexdigest()


# ------------------------------------------------------------------ running

def run_batch(flow_file: str, input: str, output: str, **options: Any) -> BatchResult:
    """Run a flow once per record of ``input`` into ``output`` (see ``arun_batch`` for the options).

    A script that uses ``engine="dask"`` without a scheduler starts a local
    cluster of worker processes: call it under ``if __name__ == "__main__":``.
    """
    return asyncio.run(arun_batch(flow_file, input, output, **options))


async def arun_batch(flow_file: str, input: str, output: str, *, flow: str | None = None,
                     concurrency: int = DEFAULT_CONCURRENCY, resume: bool = False, overwrite: bool = False,
                     ordered: bool = False, engine: str = "local", scheduler: str | None = None,
                     cache: bool = True, trace: bool = False, model: str | None = None,
                     models: dict[str, str] | None = None, pins: dict[str, int] | None = None,
                     workdir: str = ".", program=None,
                     progress: bool | Callable[[Totals], None] = False, partition_size: int | None = None,
                     window: int | None = None, budget: float | None = None) -> BatchResult:
    """Run ``flow`` of ``flow_file`` once per record of ``input`` (.jsonl, .csv, .parquet).

    ``concurrency`` records run at once. ``resume`` continues the batch that
    wrote ``output`` (DataError when there is no checkpoint, or when the flow
    files or the input changed); without it an existing ``output`` is an error
    unless ``overwrite``. ``ordered`` writes in input order. ``engine`` is
    "local" or "dask" (on ``scheduler``, or on a local cluster). ``program``:
    the already checked Program of ``flow_file``. ``progress``: True for a
    progress display on stderr, or a function called with the totals.
    ``budget``: USD the model calls of the whole output may cost (a resumed
    batch counts what was spent before); once reached, records stop starting
    and the rest become error lines that ``resume`` runs again.
    """
    started = time.monotonic()
    if resume and overwrite:
        raise DataError("--resume continues the output and --overwrite replaces it: choose one")
    runner_engine = make_engine(engine, concurrency, scheduler, partition_size)
    program = program if program is not None else load_checked(flow_file, pins)
    decl = _flow_of(program, flow)
    source = open_source(input, dict(program.signature(decl)[0]))
    _check_output(output, input)
    scan = source.scan()
    job = BatchJob(os.path.abspath(flow_file), decl.name, flow_hash(program), tuple(sorted((pins or {}).items())),
                   model, cache, trace, os.path.abspath(workdir), checked_models(program, models), program=program)
    identity = {"job": "batch", "flow": job.flow, "flow_hash": job.flow_hash, "input_hash": scan.sha256,
                "pins": [list(p) for p in job.pins], "model": model_text(model, job.models), "ordered": ordered}
    async with runner_engine:
        checkpoint, file = _open_output(output, identity, resume, overwrite)
        done_before = checkpoint.progress.totals.get("ok", 0) + checkpoint.progress.totals.get("failed", 0)
        if budget is not None:
            spent = float(checkpoint.progress.totals.get("cost", 0.0))
            job = dataclasses.replace(job, budget=max(0.0, budget - spent))
        reporter = _reporter(progress, scan.records, done_before)
        window = window or (max(16 * concurrency, 1024) if ordered else max(100 * concurrency, 100_000))
        driver = Driver(BatchSink(file), checkpoint, ordered=ordered, window=window, on_progress=reporter)
        try:
            totals = await driver.run(runner_engine, job, source.records(checkpoint.progress.skipper()),
                                      stop_error=budget_stop_error(budget))
        finally:
            file.close()
            checkpoint.close()
            if hasattr(reporter, "finish"):
                reporter.finish(driver.totals)
    return BatchResult(output, scan.records, totals.ok, totals.failed, done_before, totals.usage,
                       time.monotonic() - started, runner_engine.name, budget, driver.unfinished)


def checked_models(program, models: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    """A job's ``models`` (declared model → PROVIDER:MODEL), sorted; DataError for a name that is not
    a declared model (with did-you-mean) or a spec that is not PROVIDER:MODEL."""
    try:
        overrides = model_choices(None, models).overrides
    except ModelChoiceError as error:
        raise DataError(str(error)) from None
    problem = unknown_model_names(program, overrides, "models[{name!r}]")
    if problem is not None:
        raise DataError(problem)
    return tuple(sorted(overrides.items()))


def budget_stop_error(budget: float | None) -> str:
    """The error of a record the budget left unrun (``--resume`` with a larger budget runs it)."""
    return f"not run: the budget of ${budget or 0:.4f} was reached (continue with --resume and a larger --budget)"


def make_engine(name: str, concurrency: int, scheduler: str | None = None, partition_size: int | None = None):
    if concurrency < 1:
        raise DataError(f"concurrency must be at least 1, got {concurrency}")
    if name == "local":
        if scheduler is not None:
            raise DataError("--scheduler goes with --engine dask")
        from .local import LocalEngine

        return LocalEngine(concurrency)
    if name == "dask":
        from .dask_engine import DaskEngine

        return DaskEngine(concurrency, scheduler=scheduler, partition_size=partition_size)
    raise DataError(f"unknown engine '{name}' (engines: local, dask)")


def _flow_of(program, name: str | None):
    try:
        return program.flow(name)
    except FlowRuntimeError as error:
        raise DataError(error.cause) from None


def checkpoint_path(output: str) -> str:
    return output + CHECKPOINT_SUFFIX


def _check_output(output: str, input: str) -> None:
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise DataError(f"cannot write '{output}': the folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK):
        raise DataError(f"cannot write '{output}': the folder '{folder}' is not writable")
    if os.path.isdir(output):
        raise DataError(f"cannot write '{output}': it is a folder")
    if os.path.exists(output) and os.path.samefile(output, input):
        raise DataError(f"the output '{output}' is the input file")


def _open_output(output: str, identity: dict[str, Any], resume: bool, overwrite: bool):
    """The checkpoint and the output file, ready to append: fresh, or cut back to the last commit."""
    path = checkpoint_path(output)
    if not resume:
        if os.path.exists(output) and not overwrite:
            raise DataError(f"'{output}' already exists: pass --overwrite to replace it, or --resume to "
                            "continue the batch that wrote it")
        return start_output(output, identity)
    if not os.path.exists(path):
        raise DataError(f"there is no checkpoint of a batch writing '{output}' ({path}): "
                        "run without --resume to start one")
    checkpoint = Checkpoint.load(path)
    try:
        _check_same_batch(checkpoint.identity, identity, output)
        return checkpoint, open_lines(output, checkpoint.progress.position.get("output", 0))
    except BaseException:
        checkpoint.close()
        raise


def start_output(output: str, identity: dict[str, Any]):
    """A new checkpoint and an empty output file for a job starting from nothing."""
    checkpoint = Checkpoint.create(checkpoint_path(output), identity)
    try:
        return checkpoint, LineFile(output)
    except OSError as error:
        checkpoint.close()
        raise DataError(f"cannot write '{output}': {error.strerror}") from None


def _check_same_batch(saved: dict[str, Any], current: dict[str, Any], output: str) -> None:
    """A resumed batch must be the same batch: mixing two flows or two inputs in one output is refused."""
    restart = f"; restore it, or start over with --overwrite (the finished lines in '{output}' are then lost)"
    if saved.get("job") != "batch":
        raise DataError(f"the checkpoint of '{output}' belongs to another kind of job ({saved.get('job')})")
    if saved.get("flow") != current["flow"]:
        raise DataError(f"this batch runs flow '{saved.get('flow')}', not '{current['flow']}': "
                        f"resume it with --flow {saved.get('flow')}")
    if saved.get("flow_hash") != current["flow_hash"]:
        raise DataError("the flow file or a file it imports changed since this batch started, so its "
                        "outputs would mix two versions of the flow" + restart)
    if saved.get("input_hash") != current["input_hash"]:
        raise DataError("the input file changed since this batch started, so its line numbers may no "
                        "longer match the finished lines" + restart)
    for key, option in (("pins", "--pin"), ("model", "--model")):
        if saved.get(key) != current[key]:
            raise DataError(f"this batch started with {option} {_option_text(saved.get(key))}, now "
                            f"{_option_text(current[key])}: resume it with the same {option}")
    if current["ordered"] and not saved.get("ordered"):
        raise DataError("this batch started without --ordered: its output is in completion order already")


def model_text(model: str | None, models: tuple[tuple[str, str], ...]) -> str | None:
    """A job's `--model` options as one text, for its identity (a job without NAME=… keeps the text it had)."""
    parts = ([model] if model else []) + [f"{name}={spec}" for name, spec in models]
    return " ".join(parts) or None


def _option_text(value: Any) -> str:
    if not value:
        return "(none)"
    if isinstance(value, list):
        return " ".join(f"{name}@{version}" for name, version in value)
    return str(value)


def _reporter(progress, total: int, done_before: int):
    if callable(progress):
        return progress
    if not progress:
        return None
    from .progress import ProgressReporter

    return ProgressReporter(total, done_before)
