"""`fmflow trace view`: one self-contained HTML page of a run (no network: CSS and JS inline).

The page has the run's header (flow, file, status, duration, totals) and a
timeline: a row per span in tree order, its bar placed by its real start and
end, so steps that ran at the same time show as overlapping bars. Selecting a
row shows the step: a model call's messages and reply, tokens, cost, cache
hit, failed attempts (retries) and errors. Rows are drawn a thousand at a
time, so a trace of ten thousand spans opens at once.

A trace holds model output, so nothing from it is ever HTML: the header is
escaped here, and the spans travel as JSON inside a ``<script
type="application/json">`` with ``<``, ``>`` and ``&`` written as escapes
(no ``</script>`` can end it), and the script puts text into the page only
through ``textContent``.
"""

from __future__ import annotations

import html
import json
import time
from importlib import resources
from typing import Any


def render_html(records: list[dict]) -> str:
    """The page for a trace's records (as ``trace_view.read_trace`` gives them)."""
    header = next((r for r in records if r.get("type") == "run"), {})
    end = next((r for r in records if r.get("type") == "end"), None)
    spans = [_span(r) for r in records if r.get("type") == "span"]
    starts = [s["start"] for s in spans if isinstance(s["start"], (int, float))]
    ends = [s["end"] for s in spans if isinstance(s["end"], (int, float))]
    origin = min(starts) if starts else 0.0
    total = (max(ends) - origin) if ends else 0.0
    data = {"origin": origin, "total": total, "spans": spans}
    page = resources.files(__package__) / "page"
    title = f"fmflow trace {header.get('run_id', '?')} ({header.get('flow') or '?'})"
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n",
        f"<title>{html.escape(title)}</title>\n<style>\n{(page / 'trace.css').read_text(encoding='utf-8')}</style>\n",
        "</head>\n<body>\n", _header_html(header, end, spans),
        "<main>\n<section id=\"timeline\"><div id=\"axis\"><div class=\"label-head\">step</div>"
        "<div class=\"ticks\"></div></div>\n<div id=\"rows\"></div>\n"
        "<div class=\"note\" id=\"shown\"></div><button id=\"more\" hidden>Show more spans</button></section>\n"
        "<aside id=\"details\"></aside>\n</main>\n",
        f"<script type=\"application/json\" id=\"trace-data\">{script_json(data)}</script>\n",
        f"<script>\n{(page / 'trace.js').read_text(encoding='utf-8')}</script>\n</body>\n</html>\n",
    ])


def script_json(data: Any) -> str:
    """JSON that cannot end or break out of the ``<script>`` element holding it."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _span(record: dict) -> dict:
    """A span record with the fields the page reads, of the types it expects."""
    span = dict(record)
    span["id"] = str(record.get("id"))
    span["parent"] = None if record.get("parent") is None else str(record["parent"])
    span["kind"] = str(record.get("kind", "?"))
    span["name"] = str(record.get("name", "?"))
    for key in ("start", "end", "duration_ms"):
        if not isinstance(record.get(key), (int, float)) or isinstance(record.get(key), bool):
            span[key] = None
    if span["start"] is not None and span["end"] is None and span["duration_ms"] is not None:
        span["end"] = span["start"] + span["duration_ms"] / 1000.0
    return span


def _header_html(header: dict, end: dict | None, spans: list[dict]) -> str:
    status = "unfinished" if end is None else str(end.get("status", "?"))
    items = [("run", header.get("run_id")), ("flow", header.get("flow")), ("file", header.get("file")),
             ("trace id", header.get("trace_id"))]
    if isinstance(header.get("started"), (int, float)):
        items.append(("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(header["started"]))))
    items.append(("status", status))
    if end is not None:
        items.append(("duration", _ms(end.get("duration_ms"))))
        if end.get("error") is not None:
            items.append(("error", end.get("error")))
    items.extend(_totals(spans))
    cells = "".join(f"<div><dt>{html.escape(k)}</dt><dd{_status_class(k, status)}>{html.escape(str(v))}</dd></div>"
                    for k, v in items if v not in (None, ""))
    title = f"{header.get('flow') or '?'}"
    return f"<header><h1>fmflow trace · {html.escape(title)}</h1><dl>{cells}</dl></header>\n"


def _status_class(key: str, status: str) -> str:
    return f' class="status-{html.escape(status)}"' if key == "status" else ""


def _totals(spans: list[dict]) -> list[tuple[str, Any]]:
    models = [s for s in spans if s["kind"] == "model"]

    def total(key: str) -> float:
        return sum(v for s in models if isinstance(v := s.get(key), (int, float)) and not isinstance(v, bool))

    cost = total("cost")
    return [("spans", len(spans)), ("model calls", len(models)),
            ("tokens", f"{total('tokens_in'):g} in / {total('tokens_out'):g} out"),
            ("cost", f"${cost:.6f}" if cost else "$0"),
            ("cache hits", sum(1 for s in models if s.get("cache_hit"))),
            ("retries", int(total("retries"))),
            ("errors", sum(1 for s in spans if s.get("error") is not None))]


def _ms(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "?"
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"
