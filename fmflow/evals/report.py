"""The results of `fmflow eval` as a table for the terminal, or as one JSON object.

The JSON object (``--json``) is the summary of summary.py:

    {"eval", "file", "flow", "dataset", "records", "seconds",
     "metrics": [{"name", "kind": "rate" | "mean"}],
     "variants": [{"name", "n", "errors", "error_lines", "ran", "reused", "calls", "cached",
                   "tokens_in", "tokens_out", "cost", "latency": {"p50", "p95"} (seconds),
                   "metrics": {NAME: {"kind", "value", "low", "high", "n", "errors", "interval"}}}],
     "pairs": [{"a", "b", "metrics": {NAME: {"test", "p_value", "difference", ("low", "high" |
                "a_only", "b_only"), "n", "disagree", "disagreements": [{"line", "a", "b"}]}}}],
     "judges": {"calls", "cached", "tokens_in", "tokens_out", "cost"},
     "failed_bounds": [...]}   # with --fail-under
"""

from __future__ import annotations

import json
from typing import Any

SHOWN_LINES = 8   # disagreeing lines shown per metric in the table


def to_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, ensure_ascii=False, indent=2, allow_nan=False)


def number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def interval(metric: dict[str, Any]) -> str:
    if metric["value"] is None:
        return "no values"
    return f"{number(metric['value'])} [{number(metric['low'])}, {number(metric['high'])}]"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.0f}ms" if seconds < 10 else f"{seconds:.1f}s"


def p_value(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def variant_table(summary: dict[str, Any]) -> list[list[str]]:
    """Header and one row per variant: each metric with its interval, then n, errors, usage, latency."""
    names = [m["name"] + (" (rate)" if m["kind"] == "rate" else " (mean)") for m in summary["metrics"]]
    rows = [["variant", *names, "n", "errors", "tokens", "cost", "p50", "p95"]]
    for v in summary["variants"]:
        rows.append([v["name"], *(interval(v["metrics"][m["name"]]) for m in summary["metrics"]), str(v["n"]),
                     str(v["errors"]), f"{v['tokens_in'] + v['tokens_out']:,}", f"${v['cost']:.4f}",
                     duration(v["latency"]["p50"]), duration(v["latency"]["p95"])])
    return rows


def pair_lines(pair: dict[str, Any], kinds: dict[str, str]) -> list[str]:
    lines = [f"{pair['b']} vs {pair['a']}"]
    for name, test in pair["metrics"].items():
        diff = test["difference"]
        change = "–" if diff is None else f"{diff:+.3f}"
        if test["test"] == "paired bootstrap" and test.get("low") is not None:
            change += f" [{test['low']:+.3f}, {test['high']:+.3f}]"
        listed = [str(d["line"]) for d in test["disagreements"][:SHOWN_LINES]]
        more = "" if test["disagree"] <= SHOWN_LINES else ", …"
        where = f"lines {', '.join(listed)}{more}" if listed else "none"
        test_name = "McNemar exact" if test["test"] == "mcnemar" else "paired bootstrap"
        lines.append(f"  {name}: {change}  {test_name} {p_value(test['p_value'])}, n = {test['n']}; "
                     f"{test['disagree']} disagree ({where})")
    return lines


def text_report(summary: dict[str, Any]) -> str:
    head = (f"eval {summary['eval']}: flow {summary['flow']} on {summary['dataset']} "
            f"({summary['records']} records, {summary['seconds']:.1f}s)")
    table = variant_table(summary)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    out = [head, ""]
    for row in table:
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    kinds = {m["name"]: m["kind"] for m in summary["metrics"]}
    for pair in summary["pairs"]:
        out.append("")
        out.extend(pair_lines(pair, kinds))
    reused = sum(v["reused"] for v in summary["variants"])
    if reused:
        out.append("")
        out.append(f"{reused} outputs came from the stored results of an earlier run (--no-cache runs all again)")
    judges = summary["judges"]
    if judges["calls"]:
        out.append(f"judges: {judges['calls']} model calls ({judges['cached']} cached), "
                   f"{judges['tokens_in'] + judges['tokens_out']:,} tokens, ${judges['cost']:.4f}")
    for variant in summary["variants"]:
        if variant["errors"]:
            lines = ", ".join(map(str, variant["error_lines"][:SHOWN_LINES]))
            out.append(f"{variant['name']}: {variant['errors']} records failed (lines {lines}"
                       f"{', …' if variant['errors'] > SHOWN_LINES else ''})")
    return "\n".join(out) + "\n"
