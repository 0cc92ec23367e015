"""`fmflow eval --html`: one self-contained page of an eval's results.

No script, no network: inline CSS and SVG only. Every text from the flow
file, the dataset or a model goes through ``html.escape``. Sections: the
variants × metrics table (value and 95% interval, n, errors, tokens, cost,
latency), one chart per metric (each variant's value as a bar with its
interval as a whisker), the paired tests, and per pair and metric the
records where the variants disagree, with both outputs side by side.
"""

from __future__ import annotations

import json
import os
import tempfile
from html import escape
from typing import Any

from .report import duration, interval, number, p_value, variant_table

SHOWN_RECORDS = 20       # disagreeing records shown per pair and metric
TEXT_LIMIT = 2000        # characters of a record or output shown
LABEL_CHARS = 20         # characters of a variant's name beside its bar

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1b1f24;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em}h3{font-size:1em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;
vertical-align:top;white-space:nowrap}th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{margin:0;white-space:pre-wrap;word-break:break-word;max-width:420px;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:1.5em}.chart{border:1px solid #d0d7de;padding:.5em;margin:0}
.muted{color:#57606a}
"""


def write_html(summary: dict[str, Any], run, path: str) -> None:
    """Write the report to ``path`` (whole or not at all: a temporary file renamed into place)."""
    text = render_html(summary, run)
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".report-", suffix=".html")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def render_html(summary: dict[str, Any], run) -> str:
    title = f"eval {summary['eval']}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">flow <b>{escape(summary["flow"])}</b> on {escape(summary["dataset"])}: '
        f'{summary["records"]} records, {len(summary["variants"])} variants</p>',
        "<h2>Variants</h2>", _table(variant_table(summary)),
        "<h2>Metrics</h2>", '<div class="charts">',
        *(_chart(summary, m) for m in summary["metrics"]), "</div>",
    ]
    if summary["pairs"]:
        parts += ["<h2>Paired tests</h2>", _pairs_table(summary)]
        parts += ["<h2>Where the variants disagree</h2>"]
        for pair in summary["pairs"]:
            parts.append(_disagreements(pair, run))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _chart(summary: dict[str, Any], metric: dict[str, Any]) -> str:
    """Bars of each variant's value with its interval; rates on 0..1, means on their own range."""
    name = metric["name"]
    points = [(v["name"], v["metrics"][name]) for v in summary["variants"]]
    known = [p for _, p in points if p["value"] is not None]
    low = min([0.0, *(p["low"] for p in known if p["low"] is not None)])
    high = max([1.0 if metric["kind"] == "rate" else 0.0, *(p["high"] for p in known if p["high"] is not None),
                *(p["value"] for p in known)])
    span = (high - low) or 1.0
    width, label_width, bar_height = 460, 150, 22
    height = len(points) * (bar_height + 8) + 24

    def x(value: float) -> float:
        return label_width + (value - low) / span * (width - label_width - 10)

    shapes = [f'<line x1="{x(0):.1f}" y1="0" x2="{x(0):.1f}" y2="{height - 18}" stroke="#8c959f"/>']
    for i, (variant, point) in enumerate(points):
        y = 4 + i * (bar_height + 8)
        shapes.append(_label(variant, y, label_width - 8, bar_height))
        if point["value"] is None:
            shapes.append(f'<text x="{label_width}" y="{y + 15}" font-size="12" fill="#57606a">no values</text>')
            continue
        left, right = sorted((x(0), x(point["value"])))
        shapes.append(f'<rect x="{left:.1f}" y="{y}" width="{right - left:.1f}" height="{bar_height}" '
                      f'fill="#54aeff"><title>{escape(interval(point))}</title></rect>')
        if point["low"] is not None:
            lo, hi, mid = x(point["low"]), x(point["high"]), y + bar_height / 2
            shapes.append(f'<line x1="{lo:.1f}" y1="{mid}" x2="{hi:.1f}" y2="{mid}" stroke="#1b1f24" stroke-width="2"/>')
            for end in (lo, hi):
                shapes.append(f'<line x1="{end:.1f}" y1="{y + 5}" x2="{end:.1f}" y2="{y + bar_height - 5}" '
                              'stroke="#1b1f24" stroke-width="2"/>')
    # The axis ends: the low one starts at the plot's left, the high one ends at its right (however long).
    shapes.append(f'<text x="{label_width}" y="{height - 4}" font-size="11" fill="#57606a">{number(low)}</text>')
    shapes.append(f'<text x="{width - 10}" y="{height - 4}" font-size="11" fill="#57606a" '
                  f'text-anchor="end">{number(high)}</text>')
    caption = f"{name} ({metric['kind']}, 95% interval)"
    return (f'<figure class="chart" data-metric="{escape(name)}"><figcaption>{escape(caption)}</figcaption>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(caption)}">{"".join(shapes)}</svg></figure>')


def _label(variant: str, y: float, width: int, height: int) -> str:
    """A variant's name left of its bar: long names are shortened with "…" and clipped by a nested
    <svg> (glyph widths are the browser's to know), the whole name in a tooltip."""
    shown = variant if len(variant) <= LABEL_CHARS else variant[:LABEL_CHARS - 1] + "…"
    return (f'<svg x="0" y="{y}" width="{width}" height="{height}"><text x="0" y="15" font-size="12">'
            f'<title>{escape(variant)}</title>{escape(shown)}</text></svg>')


def _pairs_table(summary: dict[str, Any]) -> str:
    rows = [["comparison", "metric", "difference", "test", "p-value", "n", "disagree"]]
    for pair in summary["pairs"]:
        for name, test in pair["metrics"].items():
            diff = "–" if test["difference"] is None else f"{test['difference']:+.3f}"
            if test.get("low") is not None:
                diff += f" [{test['low']:+.3f}, {test['high']:+.3f}]"
            rows.append([f"{pair['b']} vs {pair['a']}", name, diff,
                         "McNemar exact" if test["test"] == "mcnemar" else "paired bootstrap",
                         p_value(test["p_value"]), str(test["n"]), str(test["disagree"])])
    return _table(rows)


def _disagreements(pair: dict[str, Any], run) -> str:
    rows_a = _rows_of(run, pair["a"])
    rows_b = _rows_of(run, pair["b"])
    parts = [f"<h3>{escape(pair['b'])} vs {escape(pair['a'])}</h3>"]
    for name, test in pair["metrics"].items():
        shown = test["disagreements"][:SHOWN_RECORDS]
        parts.append(f"<p><b>{escape(name)}</b>: {test['disagree']} records disagree"
                     + (f" (the {len(shown)} largest differences shown)" if test["disagree"] > len(shown) else "")
                     + "</p>")
        if not shown:
            continue
        head = (f"<tr><th>line</th><th>record</th><th>{escape(pair['a'])}</th>"
                f"<th>{escape(pair['b'])}</th></tr>")
        body = []
        for item in shown:
            line = item["line"]
            body.append(
                f'<tr data-line="{line}"><td class="num">{line}</td>'
                f"<td><pre>{_text(run.records.get(line))}</pre></td>"
                f"<td><pre>{_text(_output(rows_a, line))}</pre><div class=\"muted\">{escape(name)} = "
                f"{number(item['a'])}</div></td>"
                f"<td><pre>{_text(_output(rows_b, line))}</pre><div class=\"muted\">{escape(name)} = "
                f"{number(item['b'])}</div></td></tr>")
        parts.append(f"<table class=\"disagreements\" data-metric=\"{escape(name)}\">{head}{''.join(body)}</table>")
    return "\n".join(parts)


def _rows_of(run, label: str) -> dict:
    return next((v.rows for v in run.variants if v.variant.label == label), {})


def _output(rows: dict, line: int) -> Any:
    row = rows.get(line)
    return None if row is None else row.output


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1)
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT] + "…"
    return escape(text)


__all__ = ["duration", "render_html", "write_html"]
