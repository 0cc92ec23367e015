"""examples/eval runs offline and gives the figures its README shows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.clitools import ROOT, fmflow_cmd

EXAMPLE = ROOT / "examples" / "eval"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    for name in ("support.fmflow", "faq.jsonl"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    return tmp_path


def test_the_dataset_has_twenty_records_or_more():
    rows = [json.loads(line) for line in (EXAMPLE / "faq.jsonl").read_text().splitlines()]
    assert len(rows) >= 20
    assert all({"question", "context", "expected", "answer"} <= row.keys() for row in rows)
    assert all(row["expected"] in row["context"] for row in rows)


def test_models_eval_matches_the_readme(example):
    result = fmflow_cmd(example, "eval", "support.fmflow", "--name", "models", "--json", "--fail-under", "found=0.8",
                        timeout=300)
    assert result.returncode == 1, result.stderr          # brief finds 0.667, under 0.8
    summary = json.loads(result.stdout)
    brief, thorough = summary["variants"]
    assert brief["metrics"]["found"]["value"] == pytest.approx(16 / 24)
    assert thorough["metrics"]["found"]["value"] == pytest.approx(20 / 24)
    assert 0.7 < brief["metrics"]["close"]["value"] < thorough["metrics"]["close"]["value"] < 0.9
    found = summary["pairs"][0]["metrics"]["found"]
    assert (found["a_only"], found["b_only"]) == (0, 4) and found["p_value"] == pytest.approx(2 / 16)
    readme = (EXAMPLE / "README.md").read_text()
    assert "McNemar exact p = 0.125, n = 24; 4 disagree (lines 1, 3, 13, 21)" in readme
    assert summary["failed_bounds"] == ["brief: found is 0.6667, under 0.8"]
