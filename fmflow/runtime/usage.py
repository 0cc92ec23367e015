"""What a run's model calls used: calls, cache hits, tokens and cost.

``RunOptions(on_usage=usage.add_answer)`` counts every model answer of a run
into ``usage``; a caller that runs many flows (a batch) gives each run its
own Usage and adds them up, or shares one for a running total.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Usage:
    calls: int = 0          # model answers received, cached ones included
    cached: int = 0         # of which answered from the response cache
    tokens_in: int = 0      # of the answers not from the cache (those cost nothing)
    tokens_out: int = 0
    cost: float = 0.0       # in USD, of the answers whose provider reports a cost

    def add_answer(self, response, cached: bool) -> None:
        """One model answer; tokens and cost count only when a model was really asked."""
        self.calls += 1
        if cached:
            self.cached += 1
            return
        self.tokens_in += response.tokens_in or 0
        self.tokens_out += response.tokens_out or 0
        self.cost += response.cost or 0.0

    def add(self, other: "Usage") -> None:
        self.calls += other.calls
        self.cached += other.cached
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.cost += other.cost
