"""The asyncio runtime: runs checked flows (see executor.py for the model of execution)."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

from ..ast import FlowDecl
from .errors import FlowRuntimeError, describe
from .inputs import InputError, check_input_types
from .interrupt import INTERRUPTED, run_interruptibly
from .program import Program
from .run import RunOptions, RunResult, RunState, SharedModels


TURN_EVERY = 32
_RUNS = itertools.count()


async def run_flow(program: Program, flow_name: str | None, inputs: dict[str, Any],
                   options: RunOptions | None = None) -> RunResult:
    """Run one flow of a checked program with inputs given as Python or JSON values.

    ``flow_name`` names a flow of the program's own file, or is a flow declaration
    of the program (an imported one too: `fmflow eval` runs those).
    """
    # Every TURN_EVERY-th run first gives the event loop a turn. A run whose calls all
    # answer at once (a replay model, cache hits) never suspends, so runs made one after
    # another (a batch's worker, a loop over fmflow.load's flow) would otherwise hold the
    # loop for good: the loop's other tasks (a batch's periodic checkpoint commits) never
    # run, and a timer cancelled on the way (a tool's own) stays in the loop's heap until
    # its next turn. Not every run: a turn is a loop iteration (a poll of the selector),
    # and one per run costs a batch of short runs that wait on their model about a third
    # more CPU.
    if next(_RUNS) % TURN_EVERY == 0:
        await asyncio.sleep(0)
    options = options or RunOptions()
    flow = flow_name if isinstance(flow_name, FlowDecl) else program.flow(flow_name)
    params, _returns = program.signature(flow)
    check_inputs(flow, params, inputs)
    check_input_values(program, flow, params, inputs)
    state = RunState(program, options)
    trace = state.trace = _open_trace(program, flow, options, state.secrets)
    try:
        args = {name: state.validate(t, inputs[name], f"input '{name}'") for name, t in params if name in inputs}
        value = await state.run_flow(flow, args)  # evaluates the defaults of inputs left out
    except BaseException as error:
        if isinstance(error, FlowRuntimeError):
            error.mask(state.secrets)   # the run's secrets never leave it in a message
        if trace is not None:   # written before the error reaches the caller, who may look at it
            trace.close(_end_status(error), error=_describe(error))
        raise
    finally:
        if state.stream is not None:
            state.stream.flush()
    data = program.types.to_jsonable(value)
    if trace is not None:
        trace.close("ok", wait=not options.trace_in_background)
    return RunResult(value, trace.run_id if trace else None, data, secrets=state.secrets, trace=trace)


async def run_flow_once(program: Program, flow_name: str | None, inputs: dict[str, Any],
                        options: RunOptions | None = None) -> RunResult:
    """run_flow in an event loop made for this one run (``asyncio.run``)."""
    return await in_own_loop(run_flow(program, flow_name, inputs, options))


async def in_own_loop(awaitable):
    """Await runs in an event loop made for them (``asyncio.run``): the providers'
    connections bound to that loop are closed before it ends."""
    from ..providers import release_loop_resources

    try:
        return await awaitable
    finally:
        await release_loop_resources()


def check_inputs(flow, params, inputs: dict[str, Any]) -> None:
    """Every input the flow (or prompt) needs, and no other (FlowRuntimeError names the difference).
    An input with a default may be left out."""
    names = [name for name, _ in params]
    unknown = [k for k in inputs if k not in names]
    missing = [p.name for p in flow.params if p.name not in inputs and p.default is None]
    if unknown:
        raise FlowRuntimeError(f"{flow.kind} '{flow.name}' has no input {', '.join(map(repr, unknown))} "
                               f"(inputs: {', '.join(names) or 'none'})")
    if missing:
        raise FlowRuntimeError(f"{flow.kind} '{flow.name}' needs input {', '.join(map(repr, missing))}")


def check_input_values(program: Program, flow, params, inputs: dict[str, Any]) -> None:
    """Every input strictly of its declared type (inputs.py says how strict); FlowRuntimeError if not."""
    try:
        check_input_types(params, inputs, program.resolver_for_fields)
    except InputError as error:
        raise FlowRuntimeError(str(error)) from None


def open_cache(options: RunOptions):
    """A response cache of its own for the runs made with ``options`` (to pass as their
    ``shared_cache``; its opener closes it); None with the cache off."""
    if not options.cache:
        return None
    if options.shared_cache is not None:
        return options.shared_cache
    from .cache import DEFAULT_PATH, ResponseCache

    return ResponseCache(os.path.join(options.workdir, DEFAULT_PATH))


def _open_trace(program: Program, flow, options: RunOptions, secrets):
    if not options.trace:
        return None
    # Imported here: observe.trace imports runtime.boundary, so runtime cannot import it first.
    from ..observe.otlp import exporter_from_env
    from ..observe.trace import TraceWriter

    return TraceWriter(os.path.join(options.workdir, ".fmflow", "runs"), run_id=options.run_id, secrets=secrets,
                       flow=flow.name, file=program.path, to_jsonable=program.types.to_jsonable,
                       exporter=exporter_from_env())


def _describe(error: BaseException) -> str:
    if isinstance(error, FlowRuntimeError):
        return str(error)
    if isinstance(error, (asyncio.CancelledError, KeyboardInterrupt)):
        return _end_status(error)
    return describe(error)


def _end_status(error: BaseException) -> str:
    """How a run that raised ends in its trace: "interrupted" (Ctrl-C), "cancelled" or "error"."""
    if isinstance(error, KeyboardInterrupt) or (isinstance(error, asyncio.CancelledError)
                                                and error.args == (INTERRUPTED,)):
        return "interrupted"
    return "cancelled" if isinstance(error, asyncio.CancelledError) else "error"


__all__ = ["FlowRuntimeError", "Program", "RunOptions", "RunResult", "SharedModels", "check_input_values",
           "check_inputs", "in_own_loop", "open_cache", "run_flow", "run_flow_once", "run_interruptibly"]
