"""The record type of an eval's dataset, read from its first lines, and the checker's view of the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fmflow.api import check
from fmflow.evals.dataset import sample_record_type
from fmflow.types import BOOL, FLOAT, INT, JSON, STR, DictType, ListType, OptionalType


def _lines(path: Path, *rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_fields_are_typed_by_their_values(tmp_path):
    path = _lines(tmp_path / "d.jsonl",
                  {"q": "a", "n": 1, "x": 1, "ok": True, "tags": ["a"], "meta": {"k": 1}, "gone": "y", "z": None},
                  "", "not json", [1, 2],
                  {"q": "b", "n": 2.5, "x": "one", "ok": False, "tags": [], "meta": {}, "z": None, "late": 3})
    fields = dict(sample_record_type(str(path)).fields)
    assert fields == {"q": STR, "n": FLOAT, "x": JSON, "ok": BOOL, "tags": ListType(STR), "meta": DictType(JSON),
                      "gone": OptionalType(STR), "z": OptionalType(JSON), "late": OptionalType(INT)}


def test_empty_lists_take_their_items_from_other_lines(tmp_path):
    path = _lines(tmp_path / "d.jsonl", {"a": [], "b": []}, {"a": [1, 2.5]}, {"b": [], "a": None})
    assert dict(sample_record_type(str(path)).fields) == {"a": OptionalType(ListType(FLOAT)),
                                                          "b": OptionalType(ListType(JSON))}


def test_only_the_first_lines_and_bytes_are_read(tmp_path):
    path = _lines(tmp_path / "d.jsonl", *({"q": "a"} for _ in range(3)), {"q": 1})
    assert dict(sample_record_type(str(path), lines=3).fields) == {"q": STR}
    assert dict(sample_record_type(str(path)).fields) == {"q": JSON}
    long = _lines(tmp_path / "long.jsonl", {"q": "x" * 5000}, {"q": 1})
    assert dict(sample_record_type(str(long), limit=5015).fields) == {"q": STR}   # the cut second line is left out
    with pytest.raises(ValueError, match="hold no complete line"):
        sample_record_type(str(long), limit=1000)
    with pytest.raises(ValueError, match="line 1 is not a JSON object"):
        sample_record_type(str(_lines(tmp_path / "bad.jsonl", "[1]", "nope")))
    with pytest.raises(ValueError, match="no record"):
        sample_record_type(str(_lines(tmp_path / "empty.jsonl", "")))


EVAL = '''
flow f(q: str) -> str {
  return q
}

eval e {
  flow: f
  dataset: jsonl("DATA")
  metrics: { ok: len(output) > 0 }
}
'''


def _check(tmp_path: Path, data: str) -> list:
    path = tmp_path / "e.fmflow"
    path.write_text(EVAL.replace("DATA", data), encoding="utf-8")
    return [(d.code, d.message) for d in check(path) if d.is_error]


def test_the_checker_names_what_the_dataset_is(tmp_path):
    assert _check(tmp_path, "none.jsonl") == [("E002", "dataset 'none.jsonl' of eval 'e' not found")]
    (tmp_path / "folder.jsonl").mkdir()
    assert _check(tmp_path, "folder.jsonl") == [("E002", "dataset 'folder.jsonl' of eval 'e' is not a file (a folder)")]
    os.mkfifo(tmp_path / "pipe.jsonl")
    assert _check(tmp_path, "pipe.jsonl") == [
        ("E002", "dataset 'pipe.jsonl' of eval 'e' is not a file (a pipe or device)")]
    _lines(tmp_path / "ok.jsonl", {"q": "a", "extra": 1})
    assert _check(tmp_path, "ok.jsonl") == []
    _lines(tmp_path / "wrong.jsonl", {"q": 1})
    assert _check(tmp_path, "wrong.jsonl") == [
        ("E201", "field 'q' of the records of eval 'e' is int, but flow 'f' takes str")]
    _lines(tmp_path / "junk.jsonl", "junk")
    assert _check(tmp_path, "junk.jsonl") == [
        ("E201", "dataset 'junk.jsonl' of eval 'e' is not JSON lines: line 1 is not a JSON object, nor is any "
                 "line up to it")]
