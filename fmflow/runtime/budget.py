"""`--budget USD`: a cost limit on the model calls of a run, a batch, a pipeline or an eval.

Before a model call starts, its cost is estimated from the request — the
prompt's tokens (about one per four characters, plus a few per message) and
the reply's at most ``max_tokens`` (``DEFAULT_REPLY_TOKENS`` when the model
sets none) — at the prices of ``providers/costs.py`` (or the model's
``options.cost``). The call starts only if what was spent, what the calls in
flight may still cost, and this estimate stay within the limit; otherwise
``BudgetExceeded`` ends the run, naming the budget and what was spent. When
the call ends, its real cost replaces the estimate. Cache hits cost nothing
and never ask. A model without a price cannot be estimated: its calls start
while the budget is not spent, and count what the provider reports.

One ``Budget`` may be shared by many runs (a batch, a pipeline, an eval):
``RunOptions(budget=Budget(usd))``; a plain number gives each run its own.
"""

from __future__ import annotations

import math
import sys
import threading
from typing import Any

from ..providers.costs import CostError, cost_of
from .errors import FlowRuntimeError

DEFAULT_REPLY_TOKENS = 1024    # the reply's tokens when the model sets no max_tokens
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


_WARNED_UNPRICED: set[str] = set()   # models whose missing price this process has warned about
_WARNED_LOCK = threading.Lock()


class BudgetExceeded(FlowRuntimeError):
    """A model call would have taken the cost past the budget; it was not started."""


class Budget:
    """A limit in USD and what was spent against it (thread-safe)."""

    def __init__(self, limit: float, spent: float = 0.0) -> None:
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit < 0:
            raise ValueError(f"a budget is a number of USD, 0 or more; got {limit!r}")
        self.limit = float(limit)
        self.spent = float(spent)
        self.in_flight = 0.0             # the estimates of the calls started and not yet ended
        self.refused = 0                 # calls not started for want of budget
        self._lock = threading.Lock()

    @classmethod
    def of(cls, value: "Budget | float | None") -> "Budget | None":
        """The budget a run uses: a shared one as it is, a number as a new one, None for none."""
        if value is None or isinstance(value, Budget):
            return value
        return cls(value)

    @property
    def reached(self) -> bool:
        return self.refused > 0

    def start(self, config: Any, messages: list[dict], what: str) -> float:
        """Admit one call (its estimate, to give back to ``end``), or raise BudgetExceeded."""
        estimate = estimate_cost(config, messages)
        with self._lock:
            committed = self.spent + self.in_flight
            fits = committed + estimate <= self.limit if estimate is not None else committed < self.limit
            if not fits:
                self.refused += 1
            else:
                self.in_flight += estimate or 0.0
        if not fits:
            more = f" about ${estimate:.4f} more" if estimate is not None else " more"
            raise BudgetExceeded(f"the budget of ${self.limit:.4f} is reached: ${self.spent:.4f} spent, and "
                                 f"{what} would cost{more}; it was not started (raise --budget to go on)")
        if estimate is None:
            self._note_unpriced(config)
        return estimate or 0.0

    def end(self, estimate: float, cost: float | None) -> None:
        """A call admitted by ``start`` ended; ``cost`` is what it really cost (None: unknown, 0)."""
        with self._lock:
            self.in_flight = max(0.0, self.in_flight - estimate)
            self.spent += cost or 0.0

    def describe(self) -> str:
        return f"${self.spent:.4f} of the ${self.limit:.4f} budget spent"

    def _note_unpriced(self, config: Any) -> None:
        name = getattr(config, "name", "?")
        with _WARNED_LOCK:   # once per process: a pipeline opens a budget per stage, each saying the same
            if name in _WARNED_UNPRICED:
                return
            _WARNED_UNPRICED.add(name)
        print(f"fmflow: warning: model '{name}' has no price (options.cost or a known model name), so its "
              "calls cannot be estimated against the budget; what its provider reports is counted",
              file=sys.stderr)


def estimate_cost(config: Any, messages: list[dict]) -> float | None:
    """The most a call may cost in USD: its prompt's tokens and ``max_tokens`` of reply; None when
    the model has no price."""
    chars = sum(len(m.get("content") or "") if isinstance(m.get("content"), str) else len(str(m.get("content")))
                for m in messages)
    tokens_in = -(-chars // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)
    tokens_out = config.max_tokens if config.max_tokens is not None else DEFAULT_REPLY_TOKENS
    try:
        return cost_of(config.options, [config.model], tokens_in, tokens_out, where=f"model '{config.name}'")
    except CostError as error:
        raise FlowRuntimeError(str(error)) from None
