"""The checker starts from the node lists the parser's nesting check made (ast.Module.walks)."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest

from fmflow import ast
from fmflow.checks import run_passes
from fmflow.checks.context import CheckContext
from fmflow.diagnostics import Diagnostics
from fmflow.parser import parse_source
from fmflow.source import SourceFile

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "examples" / "quickstart" / "ask.fmflow"
EXTRA = '''
flow extra(x: str) -> str {
  y = [c for c in [x] if c != ""]
  return y[0]
}
'''


def _parsed(text: str, path: str = "walks.fmflow"):
    source = SourceFile(path, text)
    diagnostics = Diagnostics()
    return source, parse_source(source, diagnostics), diagnostics


def _checked(source, module, diagnostics) -> list:
    ctx = CheckContext(source, module, diagnostics)
    run_passes(ctx)
    return [(d.code, d.span.start, d.message) for d in ctx.diagnostics.sorted()]


@pytest.mark.parametrize("duplicate", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))],
                         ids=["deepcopy", "pickle"])
def test_a_copied_module_is_checked_from_its_own_walks_without_walking_again(monkeypatch, duplicate):
    text = SOURCE.read_text(encoding="utf-8") + EXTRA
    source, module, diagnostics = _parsed(text)
    expected = _checked(*_parsed(text))
    walked = []
    real_walk = ast.Node.walk
    monkeypatch.setattr(ast.Node, "walk", lambda self: walked.append(self) or real_walk(self))
    assert _checked(source, duplicate(module), diagnostics) == expected
    assert not [n for n in walked if isinstance(n, ast.Decl)]  # every declaration's nodes came from the parser
