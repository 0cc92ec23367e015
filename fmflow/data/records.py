"""What flows through the data engine: numbered input records and their outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import FmflowError
from ..runtime.usage import Usage


class DataError(FmflowError):
    """A problem with the job as given (files, options, a checkpoint that does not fit):
    nothing was run. The CLI prints it as a usage error (exit status 2)."""


@dataclass(slots=True)
class Record:
    """One input record. ``line`` counts input lines (data rows for CSV and Parquet) from 1.

    ``error`` says why the source could not read it (invalid JSON, a short CSV
    row); such a record is not run, it becomes an error outcome.
    """

    line: int
    value: Any = None
    error: str | None = None


@dataclass(slots=True)
class Outcome:
    """What running one record gave: an ``output`` or an ``error``, and the model usage it took."""

    line: int
    output: Any = None
    error: str | None = None
    usage: Usage | None = None
    # The record stopped because the job's budget was reached: it is written after the last
    # commit, so that a resumed job (with a larger budget) runs it again.
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def describe_error(error: BaseException) -> str:
    """An exception as one line a user can act on (runtime errors carry their own wording)."""
    from ..runtime.errors import FlowRuntimeError

    if isinstance(error, FlowRuntimeError):
        return str(error)
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
