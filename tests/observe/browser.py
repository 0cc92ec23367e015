"""Headless Chromium (Debian's package) for page tests: the DOM after the page's scripts ran, and
screenshots. Flags keep it off the network; each call has a fresh profile folder."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

BINARIES = ("chromium-headless-shell", "chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--hide-scrollbars", "--force-device-scale-factor=1")


def binary() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no headless Chromium: the test command installs it "
                "(apt-get install -y chromium-headless-shell)")


def _run(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="fmflow-chromium-") as profile:
        return subprocess.run([binary(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120)


def dump_dom(page: Path, fragment: str = "") -> str:
    """The page's DOM as HTML, after its scripts ran."""
    result = _run("--dump-dom", page.resolve().as_uri() + fragment)
    assert result.returncode == 0, result.stderr
    return result.stdout


def screenshot(page: Path, out: Path, size: str = "1400,800", fragment: str = "") -> Path:
    result = _run(f"--screenshot={out}", f"--window-size={size}", page.resolve().as_uri() + fragment)
    assert result.returncode == 0 and out.is_file(), result.stderr
    return out
