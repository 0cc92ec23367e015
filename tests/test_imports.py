"""Every module of fmflow imports on its own, first, in a fresh interpreter.

An import cycle shows only when one particular module of the cycle is
imported first (``fmflow.observe.trace`` imports ``fmflow.runtime``, so the
runtime package must not import the trace module at its top), and a test
run imports modules in whatever order its tests happen to.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_names() -> list[str]:
    names = []
    for path in sorted((ROOT / "fmflow").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def import_alone(name: str) -> str | None:
    """None when ``import name`` works in a fresh interpreter, else the error's last line."""
    result = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def test_every_module_imports_first_on_its_own():
    names = module_names()
    assert "fmflow.observe.trace" in names and "fmflow.runtime" in names
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        failures = {name: error for name, error in zip(names, pool.map(import_alone, names)) if error}
    assert failures == {}
