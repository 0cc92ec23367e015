"""Golden diagnostics tests, in the style of mypy's test data and BAML's validation files.

Layout of ``tests/diagnostics/golden/``:

* Every top-level ``<case>.fmflow`` is one case; its expected diagnostics are in
  ``<case>.expected`` beside it.
* A top-level folder that holds a ``case.fmflow`` is also one case, named after the
  folder, with ``case.expected`` beside it. This is for cases that need files next
  to the flow file: the E401 case keeps its ``fmflow.lock`` there (a lock file
  belongs to its folder, so it cannot sit among the other cases). The lock is a
  committed file, produced once with ``python -m fmflow lock case.fmflow``, after
  which the prompt's template was edited; the test never writes it.
* Any other folder (``cycle/``, ``imports/``) only holds files that cases import;
  those files are not cases themselves.

An ``.expected`` file has one line per diagnostic, in the order ``fmflow.api.check``
returns them (sorted by file and position)::

    CODE LINE:COL-END_LINE:END_COL message | help: help text

A diagnostic in a file other than the case's flow file starts with that file's
path relative to the golden folder (``cycle/b.fmflow: E002 …``). Absolute paths
inside messages are written as ``<golden>/…`` and ``<stdlib>/…``, so the text does
not depend on where the repository or the current directory is.

The comparison is exact. ``UPDATE_GOLDEN=1 python -m pytest tests/diagnostics``
rewrites the ``.expected`` files from the checker's current output instead;
read the diff before committing it.

A case whose name starts with a code (``e101_…``, ``w501_…``) must report at least
one diagnostic with that code; ``multi_…`` cases show that several different
errors in one file are all reported.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run from any directory, without installing fmflow
    sys.path.insert(0, str(ROOT))

from fmflow.api import check
from fmflow.diagnostics import CODES, Diagnostic
from fmflow.resources import stdlib_dir

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = bool(os.environ.get("UPDATE_GOLDEN"))
MIN_CASES = 40
_CODE_PREFIX = re.compile(r"^([ew]\d{3})_")


def _cases() -> dict[str, Path]:
    """Case name → its flow file."""
    cases: dict[str, Path] = {}
    for entry in sorted(GOLDEN.iterdir()):
        if entry.is_file() and entry.suffix == ".fmflow":
            cases[entry.stem] = entry
        elif entry.is_dir() and (entry / "case.fmflow").is_file():
            cases[entry.name] = entry / "case.fmflow"
    return cases


CASES = _cases()


def _expected_path(flow: Path) -> Path:
    return flow.with_suffix(".expected")


def _stable(text: str) -> str:
    """Absolute paths in messages, made independent of the checkout's location."""
    for folder, label in ((GOLDEN, "<golden>"), (Path(stdlib_dir()).resolve(), "<stdlib>")):
        text = text.replace(str(folder) + os.sep, label + "/").replace(str(folder), label)
    return text.replace("\n", "\\n")


def _where(diagnostic: Diagnostic, flow: Path) -> str:
    path = Path(diagnostic.span.path).resolve()
    if path == flow:
        return ""
    try:
        shown = path.relative_to(GOLDEN).as_posix()
    except ValueError:
        shown = _stable(str(path))
    return f"{shown}: "


def render(diagnostics: list[Diagnostic], flow: Path) -> str:
    lines = []
    for d in diagnostics:
        s = d.span
        line = f"{_where(d, flow)}{d.code} {s.line}:{s.col}-{s.end_line}:{s.end_col} {_stable(d.message)}"
        if d.help:
            line += f" | help: {_stable(d.help)}"
        lines.append(line)
    return "".join(line + "\n" for line in lines)


@pytest.mark.parametrize("name", list(CASES))
def test_golden(name: str) -> None:
    flow = CASES[name]
    diagnostics = check(flow)
    actual = render(diagnostics, flow)
    expected_file = _expected_path(flow)
    if UPDATE:
        expected_file.write_text(actual, encoding="utf-8")
    else:
        assert expected_file.is_file(), f"{expected_file} is missing; run with UPDATE_GOLDEN=1"
        expected = expected_file.read_text(encoding="utf-8")
        assert actual == expected, f"diagnostics of {name} differ from {expected_file.name}"
    prefix = _CODE_PREFIX.match(name)
    if prefix:
        code = prefix.group(1).upper()
        assert code in {d.code for d in diagnostics}, f"case {name} reports no {code}"


def test_every_code_is_covered() -> None:
    covered: set[str] = set()
    for flow in CASES.values():
        expected = _expected_path(flow)
        if expected.is_file():
            for line in expected.read_text(encoding="utf-8").splitlines():
                covered.update(re.findall(r"(?:^|: )([EW]\d{3}) \d+:\d+-", line)[:1])
    assert set(CODES) <= covered, f"codes without a golden case: {sorted(set(CODES) - covered)}"


def test_enough_cases() -> None:
    assert len(CASES) >= MIN_CASES, f"only {len(CASES)} golden cases"
