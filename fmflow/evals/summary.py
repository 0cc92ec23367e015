"""The results of an eval as plain data: per variant and per pair of variants (see report.py for its shape)."""

from __future__ import annotations

import math
import zlib
from itertools import combinations
from typing import Any

from .runner import EvalRun, VariantRun
from .statistics import bootstrap_mean, mcnemar_exact, paired_bootstrap, percentile, wilson

MAX_LISTED = 100     # disagreeing records listed per pair and metric in the JSON


def summarise(run: EvalRun, seed: int = 0) -> dict[str, Any]:
    plan = run.plan
    return {
        "eval": plan.name,
        "file": run.path,
        "flow": plan.flow,
        "dataset": plan.dataset.written,
        "records": len(run.records),
        "metrics": [{"name": m.name, "kind": "rate" if m.rate else "mean"} for m in plan.metrics],
        "variants": [_variant(plan, v, seed) for v in run.variants],
        "pairs": [_pair(plan, a, b, seed) for a, b in combinations(run.variants, 2)],
        "judges": _usage(run.scoring_usage),
        "seconds": round(run.seconds, 3),
    }


def _seed(seed: int, *parts: str) -> int:
    return zlib.crc32("\x00".join(parts).encode("utf-8")) ^ seed


def _usage(u) -> dict[str, Any]:
    return {"calls": u.calls, "cached": u.cached, "tokens_in": u.tokens_in, "tokens_out": u.tokens_out,
            "cost": round(u.cost, 6)}


def _variant(plan, run: VariantRun, seed: int) -> dict[str, Any]:
    rows = list(run.rows.values())
    usage = _usage_total(rows)
    seconds = [r.seconds for r in rows if r.seconds > 0]
    errors = [r for r in rows if r.error is not None]
    return {
        "name": run.variant.label,
        "n": len(rows),
        "errors": len(errors),
        "error_lines": sorted(r.line for r in errors)[:MAX_LISTED],
        "ran": run.ran,
        "reused": len(rows) - run.ran,
        **_usage(usage),
        "latency": {"p50": _finite(percentile(seconds, 50)), "p95": _finite(percentile(seconds, 95))},
        "metrics": {m.name: _metric(m, rows, _seed(seed, run.variant.label, m.name)) for m in plan.metrics},
    }


def _usage_total(rows):
    from ..runtime.usage import Usage

    total = Usage()
    for row in rows:
        total.add(row.usage)
    return total


def _metric(metric, rows, seed: int) -> dict[str, Any]:
    values = [r.metrics[metric.name] for r in rows if metric.name in r.metrics]
    errors = sum(1 for r in rows if metric.name in r.metric_errors)
    if metric.rate:
        hits = int(sum(values))
        low, high = wilson(hits, len(values))
        value = hits / len(values) if values else None
        interval = "wilson"
    else:
        low, high = bootstrap_mean(values, seed=seed)
        value = math.fsum(values) / len(values) if values else None
        interval = "bootstrap"
    return {"kind": "rate" if metric.rate else "mean", "value": value, "low": _finite(low) if values else None,
            "high": _finite(high) if values else None, "n": len(values), "errors": errors, "interval": interval}


def _pair(plan, a: VariantRun, b: VariantRun, seed: int) -> dict[str, Any]:
    return {"a": a.variant.label, "b": b.variant.label,
            "metrics": {m.name: _paired(m, a, b, _seed(seed, a.variant.label, b.variant.label, m.name))
                        for m in plan.metrics}}


def _paired(metric, a: VariantRun, b: VariantRun, seed: int) -> dict[str, Any]:
    name = metric.name
    lines = sorted(line for line, row in a.rows.items()
                   if name in row.metrics and line in b.rows and name in b.rows[line].metrics)
    first = [a.rows[line].metrics[name] for line in lines]
    second = [b.rows[line].metrics[name] for line in lines]
    differing = [(line, x, y) for line, x, y in zip(lines, first, second) if abs(x - y) > 1e-12]
    if metric.rate:
        only_a = sum(1 for _, x, y in differing if x > y)
        only_b = len(differing) - only_a
        result = {"test": "mcnemar", "p_value": mcnemar_exact(only_a, only_b), "a_only": only_a,
                  "b_only": only_b, "difference": (sum(second) - sum(first)) / len(lines) if lines else None}
    else:
        paired = paired_bootstrap(first, second, seed=seed)
        result = {"test": "paired bootstrap", "p_value": paired.p_value, "difference": _finite(paired.difference),
                  "low": _finite(paired.low), "high": _finite(paired.high)}
    differing.sort(key=lambda d: (-abs(d[2] - d[1]), d[0]))
    return {**result, "n": len(lines), "disagree": len(differing),
            "disagreements": [{"line": line, "a": x, "b": y} for line, x, y in differing[:MAX_LISTED]]}


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def check_bounds(summary: dict[str, Any], bounds: dict[str, float]) -> list[str]:
    """Why the results miss ``--fail-under`` bounds (METRIC → lowest value every variant must reach)."""
    missed = []
    for metric, bound in bounds.items():
        for variant in summary["variants"]:
            value = variant["metrics"][metric]["value"]
            if value is None or value < bound:
                shown = "no value" if value is None else f"{value:.4g}"
                missed.append(f"{variant['name']}: {metric} is {shown}, under {bound:g}")
    return missed
