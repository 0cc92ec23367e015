"""The formatter's work grows linearly with the number of declarations.

Time is never asserted: the work is counted as the lines of fmflow's own code
that ``format_module`` executes (``sys.settrace``), which is deterministic.
A scan of every comment per declaration, or a layout of a whole line per
group it holds, shows up as work per declaration (or per group) that grows
with the file (or the line).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import fmflow
from fmflow.formatter import format_module
from fmflow.parser import parse_text

PACKAGE = str(Path(fmflow.__file__).parent)

# Every kind of declaration, with own-line, trailing and `##` comments, defaults,
# a comment among a tool's parameters (and a tool without), if/elif/else and a pipeline's steps.
UNIT = '''\
# model {i}
model m{i} {{ provider: "openai", name: "x", temperature: 0.2 }}  # trailing
## Levels.
enum E{i} {{ a, b, c }}
type T{i} {{
  ## The text.
  a: str  # kept
  b: int?
  c: list[E{i}]
}}
## Says hello.
flow f{i}(
  ## Who.
  x: str, n: int = 2) -> str {{
  # before the if
  if n > 1 {{
    return x + "{i}"  # one
  }} elif n > 0 {{  # two
    return x
  }} else {{
    # three
    return "none"
  }}
}}
tool t{i}(
  # about x
  x: str) -> int = python("bench_tools:word_count")
tool u{i}(x: str, n: int = 1) -> int = python("bench_tools:word_count")
pipeline p{i} {{
  source: jsonl("in.jsonl", type: T{i})
  steps: [
    # first
    keep(record.b > 1),  # trailing
    map(T{i}(a: record.a, b: record.b, c: record.c)),
  ]
  sink: jsonl("out.jsonl")  # written atomically
}}
'''


def source(units: int) -> str:
    return "".join(UNIT.format(i=i) for i in range(units))


def long_line(terms: int) -> str:
    """One statement of ``terms`` calls added up: far too long for a line, with a group per call."""
    calls = " + ".join(f"g({i})" for i in range(terms))
    return f'tool g(x: int) -> int = python("m:f")\nflow f(x: int) -> int {{\n  return {calls}\n}}\n'


def lines_executed(text: str) -> int:
    """Lines of fmflow's code run while formatting ``text`` (parsing not counted)."""
    module, diagnostics = parse_text(text, "scaling.fmflow")
    assert not diagnostics, diagnostics[:3]
    count = 0

    def trace(frame, event, arg):
        if not frame.f_code.co_filename.startswith(PACKAGE):
            return None
        def local(frame, event, arg):
            nonlocal count
            if event == "line":
                count += 1
            return local
        return local(frame, event, arg)

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        format_module(module)
    finally:
        sys.settrace(previous)
    return count


@pytest.mark.skipif(sys.gettrace() is not None, reason="a tracer (debugger, coverage) is already running")
def test_formatting_work_per_declaration_does_not_grow_with_the_file():
    small, large = 40, 400
    per_unit_small = lines_executed(source(small)) / small
    per_unit_large = lines_executed(source(large)) / large
    # Linear work gives the same count per unit at both sizes (a few lines of set-up
    # aside); a scan of everything pending per declaration gives ten times as much.
    assert per_unit_large < 1.1 * per_unit_small, (per_unit_small, per_unit_large)


@pytest.mark.skipif(sys.gettrace() is not None, reason="a tracer (debugger, coverage) is already running")
def test_formatting_work_per_term_does_not_grow_with_a_long_line():
    """Breaking a line tries its groups from the widest: each try must not lay the whole line out again."""
    small, large = 30, 300
    per_term_small = lines_executed(long_line(small)) / small
    per_term_large = lines_executed(long_line(large)) / large
    assert per_term_large < 1.2 * per_term_small, (per_term_small, per_term_large)


def test_the_scaling_source_formats_to_a_fixed_point():
    module, diagnostics = parse_text(source(3), "scaling.fmflow")
    assert not diagnostics
    once = format_module(module)
    again, diagnostics = parse_text(once, "scaling.fmflow")
    assert not diagnostics
    assert format_module(again) == once
