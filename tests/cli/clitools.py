"""Running `python -m fmflow` in a subprocess the way a user would, and writing files for it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[")


def fmflow_cmd(cwd: Path, *args: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
    """Run fmflow; never a traceback, and no colour without a terminal."""
    environment = {k: v for k, v in os.environ.items() if k not in ("FMFLOW_DEBUG", "FMFLOW_STRICT", "NO_COLOR")}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    environment["TERM"] = "xterm"
    environment.update(env or {})
    result = subprocess.run([sys.executable, "-m", "fmflow", *map(str, args)], cwd=cwd, env=environment,
                            capture_output=True, text=True, timeout=timeout)
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream, stream
        assert not ANSI.search(stream), f"ANSI escapes with no terminal: {stream!r}"
    return result


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
