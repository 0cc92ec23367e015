"""`fmflow trace view` (LANGUAGE.md §10): the page as headless Chromium shows it after its scripts ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fmflow
from browser import dump_dom, screenshot
from dom import parse
from fmflow.observe.html_view import render_html
from fmflow.observe.trace_view import read_trace

ROOT = Path(__file__).resolve().parents[2]

# Concurrent calls (a comprehension on a model with concurrency 4), one retry (a 429 first) and
# one cache hit (the same request twice on a model at temperature 0).
DEMO = '''\
model fast {
  provider: "replay"
  name: "fast-model"
  temperature: 0
  options: { responses: [{ text: "x", tokens_in: 5, tokens_out: 1, cost: 0.00001 }], cycle: true }
}

model slow {
  provider: "replay"
  name: "slow-model"
  retry: 2
  concurrency: 4
  max_tokens: 64
  options: { responses: [
    { error: { status: 429, message: "rate limited" } },
    { text: "alpha", delay: 0.05, tokens_in: 12, tokens_out: 4, cost: 0.0001 },
    { text: "beta", delay: 0.08, tokens_in: 12, tokens_out: 3, cost: 0.0001 },
    { text: "gamma", delay: 0.03, tokens_in: 12, tokens_out: 3, cost: 0.0001 },
    { text: "delta", delay: 0.06, tokens_in: 12, tokens_out: 3, cost: 0.0001 }
  ] }
}

prompt label(item: str) -> str {
  model: slow
  system: "You label things."
  template: "Label {{ item }}"
}

prompt echo(q: str) -> str {
  model: fast
  template: "Say {{ q }}"
}

flow demo(items: list[str]) -> list[str] {
  first = echo(q: "x")
  again = echo(q: first)
  labels = [label(item: i) for i in items]
  return labels
}
'''

HOSTILE = '</script><script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">&amp;'


def demo_trace(folder: Path) -> Path:
    path = folder / "demo.fmflow"
    path.write_text(DEMO, encoding="utf-8")
    flow = fmflow.load(path, "demo", workdir=folder)
    assert sorted(flow.run(items=["a", "b", "c", "d"])) == ["alpha", "beta", "delta", "gamma"]
    return Path(flow.last_run.trace_path)


def view(folder: Path, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fmflow", "trace", "view", *args], cwd=folder, env=environment,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo run's trace, its page written by `fmflow trace view`, and the spans."""
    folder = tmp_path_factory.mktemp("demo")
    trace = demo_trace(folder)
    result = view(folder, "last", "--output", "page.html")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "page.html"
    records = read_trace(trace)
    (folder / "trace-header.json").write_text(json.dumps(records[0]))
    return folder / "page.html", [r for r in records if r["type"] == "span"]


def bar_interval(row) -> tuple[float, float]:
    style = row.find(cls="bar").style()
    left, width = float(style["left"].rstrip("%")), float(style["width"].rstrip("%"))
    return left, left + width


def test_the_page_shows_the_run_its_timeline_and_a_model_call(demo):
    page, spans = demo
    retried = next(s for s in spans if s["kind"] == "model" and s.get("retries"))
    document = parse(dump_dom(page, f"#span={retried['id']}"))
    assert document.find("body").attrs.get("data-ready") == "yes"     # the script ran to its end

    header = {item.find("dt").text(): item.find("dd").text() for item in document.find("header").find_all("div")}
    assert {"flow": "demo", "status": "ok", "spans": "17", "model calls": "6", "tokens": "58 in / 15 out",
            "cost": "$0.000420", "cache hits": "1", "retries": "1", "errors": "0"}.items() <= header.items()
    assert header["file"].endswith("demo.fmflow") and header["duration"].endswith("ms")
    assert header["trace id"] == json.loads(page.with_name("trace-header.json").read_text())["trace_id"]

    rows = document.find_all(cls="row")
    assert len(rows) == len(spans) == 17
    assert [r.attrs["data-id"] for r in rows][0] == next(s["id"] for s in spans if s["kind"] == "flow")
    # Nesting: a model call is indented below its prompt, below its assignment.
    depth = {r.attrs["data-id"]: int(r.find(cls="label").style()["padding-left"].rstrip("px")) for r in rows}
    assert depth[retried["id"]] > depth[retried["parent"]]
    # Concurrency: the four label calls' bars overlap in time.
    models = [r for r in rows if "k-model" in r.find(cls="bar").classes]
    slow = [bar_interval(r) for r in models if "slow" in r.find(cls="name").text()]
    assert len(slow) == 4
    assert max(start for start, _ in slow) < min(end for _, end in slow)
    cached = [r for r in models if "cache-hit" in r.find(cls="bar").classes]
    assert len(cached) == 1 and cached[0].find(cls="badge", ).text() == "cache"

    details = document.find(id="details")
    text = details.text()
    assert details.find("h2").text() == "model slow"
    facts = {tr.find_all("td")[0].text(): tr.find_all("td")[1].text() for tr in details.find("table").find_all("tr")}
    assert {"model": "slow-model", "provider": "replay", "tokens in": "12", "retries": "1", "cache hit": "no",
            "prompt": "label v1", "max tokens": "64"}.items() <= facts.items()
    attempts = details.find_all("table")[1].text()
    assert "#1" in attempts and "429 rate limited" in attempts
    roles = [m.find(cls="role").text() for m in details.find_all(cls="message") if "reply" not in m.classes]
    assert roles == ["system", "user"]
    assert "You label things." in text and "Label " in text
    assert details.find(cls="reply").text().strip() in {"alpha", "beta", "gamma", "delta"}


def test_trace_data_cannot_inject_html_or_script(tmp_path):
    records = [
        {"type": "run", "run_id": "r<b>1</b>", "flow": HOSTILE, "file": "<i>f</i>.fmflow", "started": 1.0},
        {"type": "span", "id": "s1", "parent": None, "kind": "flow", "name": HOSTILE, "start": 1.0, "end": 1.2,
         "duration_ms": 200.0, "inputs": {}, "output": HOSTILE, "error": None},
        {"type": "span", "id": "s2", "parent": "s1", "kind": "model", "name": "m", "start": 1.0, "end": 1.1,
         "duration_ms": 100.0, "inputs": {"messages": [{"role": "user<b>", "content": HOSTILE}]},
         "output": HOSTILE, "error": HOSTILE, "attempts": [{"attempt": 1, "error": HOSTILE}], "retries": 1},
        {"type": "end", "status": "<script>x</script>", "duration_ms": 200.0, "error": HOSTILE},
    ]
    page = tmp_path / "page.html"
    page.write_text(render_html(records), encoding="utf-8")
    raw = page.read_text(encoding="utf-8")
    assert raw.count("<script") == 2 and raw.count("</script>") == 2   # only the page's own two
    document = parse(dump_dom(page, "#span=s2"))
    assert document.find("title").text() == f"fmflow trace r<b>1</b> ({HOSTILE})"   # as text, never run
    assert not document.find_all("img") and not document.find_all("i") and not document.find_all("b")
    assert len(document.find_all("script")) == 2
    # The hostile text is shown, as text.
    assert HOSTILE in document.find(id="details").text()
    assert HOSTILE in document.find("header").find("h1").text()
    assert HOSTILE in document.find(cls="row", data_id="s1").text()


def test_ten_thousand_spans_draw_a_page_at_a_time(tmp_path):
    records = [{"type": "run", "run_id": "big", "flow": "big", "started": 0.0}]
    records.append({"type": "span", "id": "s0", "parent": None, "kind": "flow", "name": "big", "start": 0.0,
                    "end": 10.0, "duration_ms": 10000.0, "inputs": {}, "output": None, "error": None})
    for i in range(1, 10_000):
        records.append({"type": "span", "id": f"s{i}", "parent": "s0", "kind": "tool", "name": f"step{i}",
                        "start": i / 1000, "end": i / 1000 + 0.5, "duration_ms": 500.0, "inputs": {"i": i},
                        "output": i, "error": None})
    records.append({"type": "end", "status": "ok", "duration_ms": 10000.0})
    page = tmp_path / "big.html"
    page.write_text(render_html(records), encoding="utf-8")
    document = parse(dump_dom(page))
    assert len(document.find_all(cls="row")) == 1000
    assert document.find(id="shown").text() == "Showing 1,000 of 10,000 spans."
    assert "hidden" not in document.find(id="more").attrs
    # A link to a span far down draws the rows up to it.
    document = parse(dump_dom(page, "#span=s5500"))
    assert len(document.find_all(cls="row")) == 6000
    assert "step5500" in document.find(id="details").text()


def test_a_screenshot_shows_the_header_and_coloured_bars(demo, tmp_path):
    from PIL import Image

    page, _spans = demo
    image = Image.open(screenshot(page, tmp_path / "shot.png")).convert("RGB")
    width, height = image.size
    assert (width, height) == (1400, 800)
    colours = image.getcolors(maxcolors=width * height)
    assert len(colours) > 20                                   # not a blank page
    pixels = image.load()
    assert pixels[5, 5] == (17, 24, 39)                        # the dark header
    timeline = image.crop((400, 100, 960, 600))                # bars right of the labels
    counts = {colour: n for n, colour in timeline.getcolors(maxcolors=560 * 500)}
    for name, rgb in {"model": (16, 185, 129), "prompt": (37, 99, 235), "flow": (75, 85, 99)}.items():
        assert counts.get(rgb, 0) > 200, f"no {name} bars in the timeline"


def test_view_of_a_run_that_does_not_exist_lists_the_recent_ones(demo):
    page, _spans = demo
    result = view(page.parent, "nope")
    assert result.returncode == 2
    assert "no run 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_view_writes_beside_the_trace_by_default(tmp_path):
    trace = demo_trace(tmp_path)
    result = view(tmp_path, trace.stem[:12])
    assert result.returncode == 0, result.stderr
    written = Path(tmp_path, result.stdout.strip())
    assert written == trace.with_suffix(".html") or written.resolve() == trace.with_suffix(".html").resolve()
    assert json.loads(next(line for line in trace.read_text().splitlines()))["type"] == "run"
    assert "<!DOCTYPE html>" in written.read_text(encoding="utf-8")
