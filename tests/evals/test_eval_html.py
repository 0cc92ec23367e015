"""`fmflow eval --html`: the report's content, read back with html.parser."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.cli.clitools import write
from tests.evals.evaltools import make_project, records, run_eval


class Page(HTMLParser):
    """Tags with their attributes, table rows as lists of cell texts, and all text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture
def report(tmp_path: Path) -> tuple[str, Page]:
    project = make_project(tmp_path)
    rows = records()
    rows[0]["question"] = "<script>alert('x')</script> & \"quotes\"?"
    rows[0]["expected"] = rows[0]["question"]
    write(project, "qa.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    (project / "out").mkdir()
    result = run_eval(project, "--name", "quality", "--html", "out/report.html")
    assert result.returncode == 0, result.stderr
    raw = (project / "out" / "report.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(raw)
    return raw, page


def test_report_has_the_variant_table_and_a_chart_per_metric(report):
    raw, page = report
    variants = page.tables[0]
    assert variants[0][:3] == ["variant", "correct (rate)", "long (mean)"]
    assert [row[0] for row in variants[1:]] == ["answer@1", "answer@2"]
    assert variants[1][1] == "0.600 [0.313, 0.832]" and variants[2][1] == "0.200 [0.057, 0.510]"
    assert [row[variants[0].index("n")] for row in variants[1:]] == ["10", "10"]
    charts = [attrs["data-metric"] for tag, attrs in page.tags if tag == "figure"]
    assert charts == ["correct", "long"]
    charts = [attrs for tag, attrs in page.tags if tag == "svg" and "xmlns" in attrs]
    assert len(charts) == 2
    labels = [attrs for tag, attrs in page.tags if tag == "svg" and "xmlns" not in attrs]
    assert len(labels) == 4                             # each variant's name, clipped to its place
    bars = [attrs for tag, attrs in page.tags if tag == "rect"]
    assert len(bars) == 4                               # a bar per variant and metric


def test_report_has_the_paired_tests_and_the_disagreeing_records_side_by_side(report):
    raw, page = report
    tests = page.tables[1]
    assert tests[0] == ["comparison", "metric", "difference", "test", "p-value", "n", "disagree"]
    assert tests[1][:5] == ["answer@2 vs answer@1", "correct", "-0.400", "McNemar exact", "p = 0.289"]
    assert tests[2][3] == "paired bootstrap" and tests[2][4] == "p < 0.001"
    correct = next(t for t in page.tables[2:] if t[0][0] == "line" and len(t) == 9)
    assert correct[0] == ["line", "record", "answer@1", "answer@2"]
    first = next(row for row in correct if row[0] == "1")
    assert json.loads(first[1])["expected"].startswith("<script>")
    assert first[2].startswith("<script>alert('x')</script>") and first[2].endswith("correct = 1.000")
    assert first[3].startswith("A: <script>") and first[3].endswith("correct = 0.000")


def test_report_is_self_contained_and_escaped(report):
    raw, page = report
    assert "<script" not in raw and "&lt;script&gt;" in raw
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    for tag, attrs in page.tags:
        assert not {"src", "href"} & set(attrs), (tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
    assert "url(" not in raw and "@import" not in raw
    csp = next(attrs["content"] for tag, attrs in page.tags if attrs.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp
