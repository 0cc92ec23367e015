"""The progress display (a bar on a terminal, plain lines elsewhere) and the summary."""

from __future__ import annotations

import io

from fmflow.data.batch import BatchResult
from fmflow.data.driver import Totals
from fmflow.data.progress import ProgressReporter, summary
from fmflow.runtime.usage import Usage


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_with_rate_and_eta_on_a_terminal():
    stream = Terminal()
    reporter = ProgressReporter(total=200, done_before=50, stream=stream, interval=0)
    reporter.started -= 2.0  # two seconds in
    reporter(Totals(ok=145, failed=5))
    reporter.finish(Totals(ok=145, failed=5))
    text = stream.getvalue()
    assert text.startswith("\r\x1b[K[##################......] 150/200 (75%)  ")
    assert "50 records/s  ETA 1.0s  5 failed" in text
    assert text.endswith("\n")


def test_plain_lines_elsewhere_and_not_too_often():
    stream = io.StringIO()
    reporter = ProgressReporter(total=10, stream=stream, interval=3600)
    reporter(Totals(ok=1))
    assert stream.getvalue() == ""  # the first line comes after one interval, not at once
    reporter._next = 0
    reporter(Totals(ok=2))
    reporter(Totals(ok=3))
    reporter.finish(Totals(ok=10))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fmflow: 2/10 (20%)  ") and "\r" not in lines[0]


def test_summary():
    usage = Usage(calls=12, cached=3, tokens_in=1200, tokens_out=345, cost=0.0123)
    result = BatchResult("out.jsonl", records=10, ok=9, failed=1, done_before=4, usage=usage, seconds=2.0,
                         engine="local")
    assert summary(result) == (
        "10 records: 9 ok, 1 failed (4 finished before this run)\n"
        "model calls: 12 (3 cached); tokens: 1,200 in, 345 out, $0.0123\n"
        "time: 2.0s (3 records/s, engine local) -> out.jsonl")
