"""Runtime errors: each names the flow, the line and the cause, never a traceback."""

from __future__ import annotations

from ..secrets import mask_url_credentials
from .boundary import clean_text


class FlowRuntimeError(Exception):
    """A flow failed while running.

    ``flow`` and ``line`` say where (the statement being evaluated), ``cause``
    says what went wrong in words a user can act on.
    """

    def __init__(self, cause: str, *, flow: str | None = None, line: int | None = None,
                 path: str | None = None) -> None:
        # URL credentials are masked from the start; a run masks its own secrets
        # (env() values, keys) before the error leaves it (see ``mask``).
        cause = clean_text(mask_url_credentials(str(cause)))
        super().__init__(cause)
        self.cause = cause
        self.flow = flow
        self.line = line
        self.path = path

    def mask(self, masker) -> "FlowRuntimeError":
        """Hide the secrets ``masker`` knows in the message."""
        self.cause = masker.mask(self.cause)
        self.args = (self.cause,)
        return self

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


def describe(error: BaseException) -> str:
    """``Type: message`` of any exception, even one whose ``str()`` fails."""
    try:
        message = str(error)
    except Exception:
        message = ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
