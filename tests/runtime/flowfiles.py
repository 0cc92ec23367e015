"""Writing and loading flow files in a test's temporary folder."""

from __future__ import annotations

import textwrap

import fmflow


def write(tmp_path, text: str, name: str = "flow.fmflow"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path, text: str, flow: str | None = None, **kwargs):
    """Load a flow whose runs keep their `.fmflow/` folder in tmp_path."""
    kwargs.setdefault("workdir", tmp_path)
    return fmflow.load(write(tmp_path, text), flow, **kwargs)
