"""The span that calls made now belong to (a context variable, so each task has its own)."""

from __future__ import annotations

import contextvars

CURRENT_SPAN: contextvars.ContextVar[str | None] = contextvars.ContextVar("fmflow_span", default=None)

# Where the text of the call being evaluated streams to, if anywhere: set while
# the statements that produce a run's final answer are evaluated.
STREAM_TO: contextvars.ContextVar = contextvars.ContextVar("fmflow_stream", default=None)

# The flows being run, outermost first, in the task evaluating a call: each
# nested flow call adds its name (a loop written as recursion shows as a cycle).
FLOW_STACK: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("fmflow_flows", default=())
