"""Prometheus metrics of a server, in a registry of its own.

A registry per app (not prometheus-client's global one) lets several apps
live in one process — tests, or two servers — without their metrics
colliding or one app's counts leaking into another's. Labels take only
served flow names and fixed words, so a client cannot grow the series.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds: from an instant cached reply to a slow model's long answer.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class ServeMetrics:
    """The counters a server keeps about its flows."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter("fmflow_requests", "Flow requests answered, by flow, route and outcome "
                                "(ok, invalid_input, error)", ["flow", "route", "outcome"], registry=registry)
        self.latency = Histogram("fmflow_request_duration_seconds", "Time to answer a flow request",
                                 ["flow", "route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.in_flight = Gauge("fmflow_requests_in_flight", "Flow requests being answered", ["flow"],
                               registry=registry)
        self.errors = Counter("fmflow_errors", "Failed flow requests, by flow and kind "
                              "(invalid_input, flow_error, internal_error, cancelled)", ["flow", "kind"],
                              registry=registry)
        self.tokens = Counter("fmflow_tokens", "Model tokens used by flow requests (cache hits excluded)",
                              ["flow", "direction"], registry=registry)
        self.cost = Counter("fmflow_cost_usd", "Cost in USD of the model calls of flow requests, where known",
                            ["flow"], registry=registry)
        self.model_calls = Counter("fmflow_model_calls", "Model replies used by flow requests, by cache hit or miss",
                                   ["flow", "cache"], registry=registry)
        self.rejected = Counter("fmflow_rejected_requests", "Requests refused before reaching a flow "
                                "(unauthorized, too_large)", ["reason"], registry=registry)

    def usage_recorder(self, flow: str):
        """A RunOptions.on_usage callback counting one flow's tokens, cost and cache hits."""
        tokens_in = self.tokens.labels(flow, "input")
        tokens_out = self.tokens.labels(flow, "output")
        cost = self.cost.labels(flow)
        hits, misses = self.model_calls.labels(flow, "hit"), self.model_calls.labels(flow, "miss")

        def record(response, cache_hit: bool) -> None:
            if cache_hit:
                hits.inc()
                return
            misses.inc()
            if response.tokens_in:
                tokens_in.inc(response.tokens_in)
            if response.tokens_out:
                tokens_out.inc(response.tokens_out)
            if response.cost:
                cost.inc(response.cost)

        return record

    def finished(self, flow: str, route: str, outcome: str, seconds: float | None,
                 error_kind: str | None = None) -> None:
        """One request answered; ``seconds`` is None for one refused before running (not a latency)."""
        self.requests.labels(flow, route, outcome).inc()
        if seconds is not None:
            self.latency.labels(flow, route).observe(seconds)
        if error_kind is not None:
            self.errors.labels(flow, error_kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
