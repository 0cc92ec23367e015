"""Reading run traces back: find a run, load its records, draw it as a tree."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import FmflowError


# -- reading -------------------------------------------------------------------


class TraceNotFound(FmflowError):
    """No trace matches what the user asked for; the message lists recent runs."""


def read_trace(path: str | Path) -> list[dict]:
    """Every readable record of a trace file (see load_trace for what is skipped)."""
    return load_trace(path)[0]


def load_trace(path: str | Path) -> tuple[list[dict], list[tuple[int, str]]]:
    """The records of a trace file, and the lines skipped as ``(line number, why)``.

    A run that crashed or was killed can leave its last line cut short, even
    inside a UTF-8 character; a damaged file can hold anything. Each line is
    read on its own, so one bad line costs only itself.
    """
    records: list[dict] = []
    skipped: list[tuple[int, str]] = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                skipped.append((number, "not UTF-8 text (cut inside a character?)"))
                continue
            except (ValueError, RecursionError):
                cut = not raw.endswith(b"\n")
                skipped.append((number, "cut short" if cut else "not a JSON record"))
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                skipped.append((number, "not a JSON object"))
    return records, skipped


def describe_skipped(skipped: list[tuple[int, str]]) -> str:
    """One sentence on the skipped lines of a trace: how many, which, and why."""
    shown = "; ".join(f"line {number}: {why}" for number, why in skipped[:5])
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return f"skipped {len(skipped)} unreadable line{'s' if len(skipped) != 1 else ''} ({shown}{more})"


def _started(path: Path) -> float:
    """When a run began: its header's ``started``, else the file's mtime."""
    try:
        with open(path, encoding="utf-8") as fh:
            return float(json.loads(fh.readline())["started"])
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0


def list_runs(runs_dir: str | Path) -> list[Path]:
    """Trace files, newest first."""
    folder = Path(runs_dir)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.jsonl"), key=_started, reverse=True)


def find_run(runs_dir: str | Path, run: str) -> Path:
    """The trace for a run id, a unique id prefix, a file path, or "last"."""
    folder = Path(runs_dir)
    if run != "last":
        as_path = Path(run)
        if (as_path.suffix == ".jsonl" or "/" in run or os.sep in run) and as_path.is_file():
            return as_path
        exact = folder / f"{run}.jsonl"
        if exact.is_file():
            return exact
    runs = list_runs(folder)
    if not runs:
        raise TraceNotFound(f"no runs recorded in {folder} yet; `fmflow run` writes one per run")
    if run == "last":
        return runs[0]
    matches = [p for p in runs if p.stem.startswith(run)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(p.stem for p in matches[:5]) + (", …" if len(matches) > 5 else "")
        raise TraceNotFound(f"run '{run}' is ambiguous: it starts {len(matches)} run ids "
                            f"({names}); give more of the id")
    recent = "\n".join(f"  {p.stem}" for p in runs[:5])
    raise TraceNotFound(f"no run '{run}' in {folder}; recent runs (newest first):\n{recent}\n"
                        "give a run id, a unique prefix of one, a trace path, or 'last'")


# -- rendering -------------------------------------------------------------------


def _ms(value: Any) -> str:
    return f"{value:.1f} ms" if isinstance(value, (int, float)) else "? ms"


def _one_line(text: Any, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _span_label(s: dict) -> str:
    prompt = s.get("prompt") if isinstance(s.get("prompt"), dict) else {}
    tokens = s.get("tokens_in") is not None or s.get("tokens_out") is not None
    parts = [f"{s.get('kind', '?')} {s.get('name', '?')}"
             + (f" (line {s['line']})" if s.get("line") is not None else ""),
             _ms(s.get("duration_ms")),
             prompt.get("name") and f"prompt {prompt['name']}"
             + (f" v{prompt['version']}" if prompt.get("version") is not None else ""),
             s.get("model") and f"model {s['model']}",
             tokens and f"tokens {s.get('tokens_in', '?')} in / {s.get('tokens_out', '?')} out",
             s.get("cache_hit") and "cache hit",
             s.get("retries") and f"retries {s['retries']}",
             s.get("unfinished") and "UNFINISHED",
             s.get("error") is not None and f"ERROR {_one_line(s['error'])}"]
    return "  ".join(p for p in parts if p)


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, type(None))) else json.dumps(value, default=str)


MAX_INDENT = 32  # levels drawn in full; deeper spans (a long loop of flow calls) show their depth instead


def _tree_lines(spans: list[dict]) -> list[str]:
    """Children under their parent in start order; orphans at the top level.

    Tolerates damaged files: ids of any JSON type, starts that are not numbers,
    parent cycles, chains deeper than Python's recursion limit.
    """
    spans = [{**s, "id": _hashable(s.get("id")), "parent": _hashable(s.get("parent"))} for s in spans]
    ids = {s["id"] for s in spans}
    children: dict[Any, list[dict]] = {}
    for span in sorted(spans, key=lambda s: s["start"] if isinstance(s.get("start"), (int, float)) else 0.0):
        parent = span["parent"] if span["parent"] in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []
    seen: set = set()

    def walk(root: Any) -> None:
        stack = [(root, (), None)]  # (parent id, the rails above, the span to print first)
        while stack:
            parent, rails, pending = stack.pop()
            if pending is not None:
                span, last = pending
                lines.append(_indent(rails) + ("└─ " if last else "├─ ") + _span_label(span))
                stack.append((span["id"], (*rails, last), None))
                continue
            group = [s for s in children.get(parent, []) if s["id"] not in seen]
            seen.update(s["id"] for s in group)
            for i in reversed(range(len(group))):  # pushed backwards: popped in order
                stack.append((None, rails, (group[i], i == len(group) - 1)))

    walk(None)
    # Spans in a parent cycle (a malformed file) hang from no root: show them
    # at the top rather than drop them.
    children[stray := object()] = [s for s in spans if s["id"] not in seen]
    walk(stray)
    return lines


def _indent(rails: tuple[bool, ...]) -> str:
    """The tree's rails for a span whose ancestors are ``rails`` (True: the last of its siblings)."""
    shown = rails[-MAX_INDENT:]
    prefix = "".join("   " if last else "│  " for last in shown)
    return f"[depth {len(rails)}] {prefix}" if len(rails) > MAX_INDENT else prefix


def _totals(spans: list[dict]) -> str:
    def total(key: str) -> float:
        return sum(v for s in spans if isinstance(v := s.get(key), (int, float)))
    text = (f"{_plural(len(spans), 'span')}, tokens {total('tokens_in'):g} in / "
            f"{total('tokens_out'):g} out, {_plural(sum(1 for s in spans if s.get('cache_hit')), 'cache hit')}, "
            f"{_plural(sum(1 for s in spans if s.get('error') is not None), 'error')}")
    return text + (f", cost ${total('cost'):.4f}" if total("cost") else "")


def render_trace(records: list[dict]) -> str:
    """A readable tree of a trace's records: header, spans by parent, totals."""
    header = next((r for r in records if r.get("type") == "run"), {})
    end = next((r for r in records if r.get("type") == "end"), None)
    spans = [r for r in records if r.get("type") == "span"]
    title = f"run {header.get('run_id', '?')}  flow {header.get('flow') or '?'}"
    if header.get("file"):
        title += f"  file {header['file']}"
    if isinstance(header.get("started"), (int, float)):
        title += "  started " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(header["started"]))
    if end is None:
        status = "status unfinished (no end record: the run crashed or is still going)"
    else:
        status = f"status {end.get('status', '?')}  total {_ms(end.get('duration_ms'))}"
        if end.get("error") is not None:
            status += f"  error {_one_line(end['error'])}"
    return "\n".join([title, status, *_tree_lines(spans), _totals(spans)]) + "\n"
