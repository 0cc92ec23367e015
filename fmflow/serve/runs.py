"""Running a flow for a request: fresh run id, shared options, metrics, and an outcome that never raises.

Every request runs on the server's one event loop, so the models'
`concurrency` and `rate` limiters (one per model per loop, see
runtime/limits.py) are shared by all requests, as they are by the calls of
one run. Errors become an outcome with the error's text: a flow's own
failure says where and why; anything else is an internal error named by
its type, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from ..observe.trace import new_run_id
from ..runtime import RunOptions, run_flow
from ..runtime.errors import FlowRuntimeError
from .catalog import ServedFlow
from .metrics import ServeMetrics

log = logging.getLogger("fmflow.serve")


@dataclass
class RunOutcome:
    status: int                  # the HTTP status that stands for it: 200 or 500
    body: dict[str, Any]         # {"output", "run_id"} or {"error", "run_id"}

    @property
    def ok(self) -> bool:
        return self.status == 200


class FlowRunner:
    """Runs served flows with one set of options (cache, traces, workdir, default model)."""

    def __init__(self, options: RunOptions, metrics: ServeMetrics) -> None:
        self.options = options
        self.metrics = metrics
        self._usage: dict[str, Callable] = {}

    def open_shared_cache(self):
        """One response cache for every request of the server (opening one per run costs ~1 ms)."""
        if not self.options.cache or self.options.shared_cache is not None:
            return None
        from ..runtime.cache import DEFAULT_PATH, ResponseCache

        cache = ResponseCache(os.path.join(self.options.workdir, DEFAULT_PATH))
        self.options = replace(self.options, shared_cache=cache)
        return cache

    def new_run_id(self) -> str | None:
        """The id of the next run's trace (None when traces are off)."""
        if not self.options.trace:
            return None
        return new_run_id()

    def _options_for(self, flow: ServedFlow, on_text: Callable[[str], None] | None, run_id: str | None) -> RunOptions:
        usage = self._usage.get(flow.name)
        if usage is None:  # one recorder per flow: its metric children are looked up once
            usage = self._usage[flow.name] = self.metrics.usage_recorder(flow.name)
        return replace(self.options, run_id=run_id or self.new_run_id(), on_usage=usage, on_text=on_text,
                       trace_in_background=True)

    async def run(self, flow: ServedFlow, inputs: dict[str, Any], route: str,
                  on_text: Callable[[str], None] | None = None, run_id: str | None = None) -> RunOutcome:
        """Run ``flow`` on already validated inputs; metrics are recorded whatever happens."""
        options = self._options_for(flow, on_text, run_id)
        gauge = self.metrics.in_flight.labels(flow.name)
        gauge.inc()
        started = time.perf_counter()
        outcome, error_kind = None, "cancelled"
        try:
            outcome, error_kind = await self._run(flow, inputs, options)
            return outcome
        finally:
            gauge.dec()
            self.metrics.finished(flow.name, route, "ok" if outcome is not None and outcome.ok else "error",
                                  time.perf_counter() - started, error_kind)

    async def _run(self, flow: ServedFlow, inputs: dict[str, Any],
                   options: RunOptions) -> tuple[RunOutcome, str | None]:
        try:
            result = await run_flow(flow.program, flow.name, inputs, options)
        except asyncio.CancelledError:
            raise
        except FlowRuntimeError as error:
            log.warning("flow '%s' failed (run %s): %s", flow.name, options.run_id, error)
            return RunOutcome(500, {"error": str(error), "run_id": options.run_id}), "flow_error"
        except Exception as error:  # an fmflow bug: say what, never how deep
            log.error("flow '%s' hit an internal error (run %s): %s: %s", flow.name, options.run_id,
                      type(error).__name__, error, exc_info=log.isEnabledFor(logging.DEBUG))
            return RunOutcome(500, {"error": f"internal error: {type(error).__name__}: {error}",
                                    "run_id": options.run_id}), "internal_error"
        if result.trace is not None:   # the run id answered leads to a complete trace; written off the loop
            await asyncio.to_thread(result.trace.finish)
        return RunOutcome(200, {"output": result.data, "run_id": result.run_id}), None

    def rejected(self, flow: ServedFlow, route: str) -> None:
        """A request whose inputs were refused (422): counted, never run."""
        self.metrics.finished(flow.name, route, "invalid_input", None, "invalid_input")
