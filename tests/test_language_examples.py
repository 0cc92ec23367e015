"""The examples of the language contract and of the project check clean.

tests/language_examples/ holds copies of LANGUAGE.md's fmflow code blocks
(the contract lives outside this repository, so CI cannot read it); each
copy's header says what was added to make it a complete file. "Clean" means
no errors; warnings (W501 for declarations the examples never use) are allowed,
as for `fmflow check`'s exit status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fmflow.api import check

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE_EXAMPLES = sorted((ROOT / "tests" / "language_examples").glob("*.fmflow"))
PROJECT_EXAMPLES = sorted((ROOT / "examples").glob("**/*.fmflow"))


def _describe(diagnostics) -> list[str]:
    return [f"{d.span.path}:{d.span.line}:{d.span.col}: {d.code} {d.message}" for d in diagnostics]


def test_the_copies_are_there():
    names = {p.name for p in LANGUAGE_EXAMPLES}
    assert {"section2_example.fmflow", "shared.fmflow"} <= names
    assert (ROOT / "tests" / "language_examples" / "my_tools.py").is_file()


@pytest.mark.parametrize("path", LANGUAGE_EXAMPLES, ids=[p.name for p in LANGUAGE_EXAMPLES])
def test_language_examples_check_clean(path):
    diagnostics = check(path)
    errors = [d for d in diagnostics if d.is_error]
    assert not errors, _describe(errors)
    assert {d.code for d in diagnostics} <= {"W501"}, _describe(diagnostics)


def test_section2_example_uses_its_python_tools():
    """python("my_tools:…") targets exist beside the copy, with the declared shapes."""
    sys.path.insert(0, str(ROOT / "tests" / "language_examples"))
    try:
        import my_tools  # noqa: PLC0415
    finally:
        sys.path.pop(0)
    assert my_tools.word_count("a b  c") == 3
    assert my_tools.shout("hi") == "HI"


@pytest.mark.parametrize("path", PROJECT_EXAMPLES, ids=[p.parent.name + "/" + p.name for p in PROJECT_EXAMPLES])
def test_project_examples_have_no_errors(path):
    errors = [d for d in check(path) if d.is_error]
    assert not errors, _describe(errors)


def test_cli_check_examples_folder_exits_0():
    assert PROJECT_EXAMPLES, "examples/ holds no .fmflow files"
    env = {k: v for k, v in os.environ.items() if k != "FMFLOW_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-m", "fmflow", "check", "examples/"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
