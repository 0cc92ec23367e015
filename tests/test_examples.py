"""Every example folder checks clean and passes its own tests offline, through the CLI,
and is listed in examples/README.md with the model it expects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FOLDERS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and any(p.rglob("*.fmflow")))


def fmflow(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FMFLOW_MODEL", "OPENAI_API_KEY", "FMFLOW_DEBUG")}
    env["PYTHONPATH"] = str(ROOT)
    env["NO_COLOR"] = "1"
    return subprocess.run([sys.executable, "-m", "fmflow", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_there_are_examples_of_every_use_case():
    names = {p.name for p in FOLDERS}
    assert {"rag_citations", "triage", "extraction", "best_of", "research", "safety", "map_reduce",
            "sft_cleaning"} <= names


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_an_example_checks_clean_and_passes_its_tests(tmp_path, folder):
    checked = fmflow("check", folder, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "error[" not in checked.stdout
    tested = fmflow("test", folder, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "PASS" in tested.stdout and "FAIL" not in tested.stdout and " 0 failed" in tested.stdout
    for result in (checked, tested):
        assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_an_example_has_a_readme_line_and_a_model(folder):
    lines = [line for line in (EXAMPLES / "README.md").read_text(encoding="utf-8").splitlines()
             if line.startswith(f"| `{folder.name}/` |")]
    assert len(lines) == 1, f"examples/README.md has no line for {folder.name}/"
    what, model = [cell.strip() for cell in lines[0].strip("|").split("|")][1:]
    assert what and model
    sources = "\n".join(p.read_text(encoding="utf-8") for p in folder.rglob("*.fmflow"))
    # Declared, or chosen when run; or said to need none (a pipeline of expressions and filters).
    assert "model " in sources or "FMFLOW_MODEL" in sources or (model.startswith("none") and not re.search(r"^(prompt|agent) ", sources, re.M))
