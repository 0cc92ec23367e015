"""Runtime errors: each names the flow, the line and the cause, never a traceback."""

from __future__ import annotations


class FlowRuntimeError(Exception):
    """A flow failed while running.

    ``flow`` and ``line`` say where (the statement being evaluated), ``cause``
    says what went wrong in words a user can act on.
    """

    def __init__(self, cause: str, *, flow: str | None = None, line: int | None = None,
                 path: str | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.flow = flow
        self.line = line
        self.path = path

    def located(self, flow: str, line: int | None, path: str | None) -> "FlowRuntimeError":
        """The innermost location wins: a flow called by a flow keeps its own line."""
        if self.flow is None:
            self.flow, self.line, self.path = flow, line, path
        return self

    def __str__(self) -> str:
        where = []
        if self.path and self.line:
            where.append(f"{self.path}:{self.line}")
        if self.flow:
            where.append(f"flow '{self.flow}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.cause}" if prefix else self.cause


class CallFailed(FlowRuntimeError):
    """A prompt, agent, tool or model call failed for good (after its policies)."""


class NotMocked(FlowRuntimeError):
    """In `fmflow test`, a prompt or agent was called without a mock."""
