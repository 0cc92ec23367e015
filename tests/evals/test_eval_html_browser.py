"""`fmflow eval --html` in a real headless Chromium: the DOM the browser builds, the chart layout the
browser measures (every text inside its chart, labels clear of the bars), and a screenshot's colours."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.clitools import write
from tests.evals.evaltools import run_eval
from tests.observe.browser import BINARIES, dump_dom, screenshot
from tests.observe.dom import parse

if not any(shutil.which(name) for name in BINARIES):
    pytest.skip("no headless Chromium (chromium-headless-shell or chromium) on PATH: .ci/run installs it",
                allow_module_level=True)

LONG = "a_very_long_model_name_for_the_chart"

FLOW = f'''
model fast {{ provider: "replay", options: {{ echo: true }} }}
model {LONG} {{ provider: "replay", options: {{ responses: ["WWWWWWWWWW WWWWWWWWW WWWWWWWWWWWW"], cycle: true }} }}
model broken {{ provider: "replay", options: {{ responses: [{{ error: "down" }}], cycle: true }} }}

prompt answer(question: str) -> str {{
  model: fast
  template: """{{{{ question }}}}"""
}}

flow qa(question: str) -> str {{
  return answer(question: question)
}}

eval stress {{
  flow: qa
  dataset: jsonl("qa.jsonl")
  models: [fast, {LONG}, broken]
  metrics: {{ shift: len(output) - 40, big: len(output) * 1000, loud: upper(output) == output }}
}}
'''

# Layout as the browser computes it, written into the page for --dump-dom to carry out: every text
# and bar of each chart, relative to its chart; a text inside a nested <svg> is clipped by it.
MEASURE = """<script>
const found = [];
for (const figure of document.querySelectorAll("figure.chart")) {
  const chart = figure.querySelector("svg"), box = chart.getBoundingClientRect();
  for (const el of chart.querySelectorAll("text, rect")) {
    const r = el.getBoundingClientRect(), inner = el.closest("svg");
    const right = inner === chart ? r.right : Math.min(r.right, inner.getBoundingClientRect().right);
    found.push({metric: figure.dataset.metric, tag: el.tagName, text: [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.data).join("").trim(),
                tooltip: el.querySelector("title")?.textContent,
                left: r.left - box.left, right: right - box.left, full: r.right - box.left, width: box.width});
  }
}
const lines = [...document.querySelectorAll("table")[0].querySelectorAll("th, td")].map(cell => {
  const range = document.createRange();
  range.selectNodeContents(cell);
  return [cell.textContent, new Set([...range.getClientRects()].map(r => Math.round(r.top))).size];
});
const out = document.createElement("pre");
out.id = "measured";
out.textContent = JSON.stringify({charts: found, lines: lines});
document.body.appendChild(out);
</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("report")
    rows = [{"question": f"question {i}?"} for i in range(1, 11)]
    rows[0]["question"] = "<script>document.title='owned'</script> & \"q\"?"
    write(project, "evals.fmflow", FLOW)
    write(project, "qa.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    result = run_eval(project, "--html", "report.html")
    assert result.returncode == 0, result.stderr
    return project / "report.html"


def measured(report: Path) -> dict:
    """The chart layout of the report, measured by Chromium (the copy drops only the page's CSP,
    which forbids scripts)."""
    html = report.read_text(encoding="utf-8")
    start = html.index('<meta http-equiv="Content-Security-Policy"')
    html = html[:start] + html[html.index(">", start) + 1:]
    page = report.with_name("measured.html")
    page.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    return json.loads(parse(dump_dom(page)).find(id="measured").text())


def test_the_browser_builds_the_tables_and_a_chart_per_metric(report):
    document = parse(dump_dom(report))
    assert document.find("title").text() == "eval stress"           # the record's script never ran
    assert not document.find_all("script")
    variants = document.find("table")
    names = [row.find("td").text() for row in variants.find_all("tr")[1:]]
    assert names == ["fast", LONG, "broken"]
    assert [f.attrs["data-metric"] for f in document.find_all("figure")] == ["shift", "big", "loud"]
    assert all(len(f.find_all("svg")) >= 1 for f in document.find_all("figure"))
    assert len(document.find_all("rect")) == 6                      # two variants with values, three metrics
    assert "<script>document.title='owned'</script>" in document.text()  # shown as text


def test_every_chart_text_is_inside_its_chart_and_labels_clear_the_bars(report):
    items = measured(report)["charts"]
    assert {i["metric"] for i in items} == {"shift", "big", "loud"}
    for metric in ("shift", "big", "loud"):
        chart = [i for i in items if i["metric"] == metric]
        width = chart[0]["width"]
        for item in chart:
            assert item["left"] >= 0 and item["right"] <= width + 0.5, (metric, item)   # nothing cut off
        bars = [i for i in chart if i["tag"] == "rect"]
        labels = [i for i in chart if i["tag"] == "text" and i["left"] < 5]      # the variants' names
        assert [label.get("tooltip") for label in labels] == ["fast", LONG, "broken"]    # whole names on hover
        assert labels[1]["text"] == LONG[:19] + "…"
        plot_left = min(bar["left"] for bar in bars)
        for label in labels:
            assert label["right"] <= plot_left - 2, (metric, label, plot_left)      # no label runs into a bar
        short = next(label for label in labels if label["text"] == "fast")
        assert short["full"] == short["right"]                                    # a short name is whole
    big_axis = [i["text"] for i in items if i["metric"] == "big" and i["tag"] == "text" and i["left"] >= 5]
    assert "0.000" in big_axis and "33000.000" in big_axis


def test_a_screenshot_shows_the_tables_and_the_coloured_bars(report, tmp_path):
    from PIL import Image

    image = Image.open(screenshot(report, tmp_path / "shot.png", size="1400,900")).convert("RGB")
    counts = {colour: n for n, colour in image.getcolors(maxcolors=1400 * 900)}
    assert counts.get((84, 174, 255), 0) > 2000                     # the bars (#54aeff)
    assert counts.get((246, 248, 250), 0) > 2000                    # the table headers (#f6f8fa)
    assert counts.get((208, 215, 222), 0) > 500                     # cell and chart borders (#d0d7de)
    assert len(counts) > 20                                         # not a blank page


def test_a_value_and_its_interval_stay_on_one_line(report):
    lines = measured(report)["lines"]
    assert len(lines) == 4 * 10 and sum(1 for text, _ in lines if "[" in text) == 6   # values with intervals
    assert [cell for cell in lines if cell[1] != 1] == []         # no cell of the variants table wraps
