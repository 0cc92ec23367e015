"""The span that calls made now belong to (a context variable, so each task has its own)."""

from __future__ import annotations

import contextvars

CURRENT_SPAN: contextvars.ContextVar[str | None] = contextvars.ContextVar("fmflow_span", default=None)
