"""The parser's tables are cached as JSON in a private per-user folder, never pickled in a shared one."""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from lark import Lark

from fmflow import parse_tables
from fmflow.parser import _BUILD_OPTIONS, NewlineFilter, lark_parser, parse_text
from fmflow.resources import grammar_path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "examples").rglob("*.fmflow")) + sorted((ROOT / "tests" / "roundtrip" / "corpus").glob("*.fmflow"))


def fmflow_check(cwd: Path, env: dict[str, str], *files: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "fmflow", "check", *map(str, files)], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=60)


class _Payload:
    """Unpickling this creates a folder: proof that a planted file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def _lark_shared_cache_name(shared: Path) -> Path:
    """The file name Lark's ``cache=True`` uses for fmflow's grammar in the temp folder ``shared``."""
    before = set(shared.iterdir())
    saved = tempfile.tempdir
    tempfile.tempdir = str(shared)
    try:
        Lark(grammar_path().read_text(encoding="utf-8"), **_BUILD_OPTIONS, postlex=NewlineFilter(),
             lexer_callbacks={"COMMENT": lambda tok: None}, cache=True)
    finally:
        tempfile.tempdir = saved
    (created,) = set(shared.iterdir()) - before
    return created


def test_a_file_planted_in_the_shared_temp_folder_never_runs(tmp_path):
    shared, private, marker = tmp_path / "shared", tmp_path / "private", tmp_path / "planted-code-ran"
    shared.mkdir()
    planted = _lark_shared_cache_name(shared)
    header = planted.read_bytes().split(b"\n", 1)[0]
    planted.write_bytes(header + b"\n" + pickle.dumps(_Payload(marker)))
    flow = tmp_path / "ok.fmflow"
    flow.write_text('flow f(x: str) -> str { return x }\n', encoding="utf-8")
    env = {"TMPDIR": str(shared), "XDG_CACHE_HOME": str(private)}
    for _ in range(2):  # a first run writes the cache, a second reads it
        result = fmflow_check(tmp_path, env, flow)
        assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert sorted(p.name for p in shared.iterdir()) == [planted.name]  # nothing new in the shared folder
    (tables,) = (private / "fmflow").iterdir()
    assert tables.suffix == ".json"


def test_tables_are_json_in_a_folder_only_the_user_can_open(tmp_path):
    folder = tmp_path / "fmflow"
    parser = parse_tables.load_or_build("k" * 64, _build, _load, folder)
    assert isinstance(parser, Lark)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    (tables,) = folder.iterdir()
    assert stat.S_IMODE(tables.stat().st_mode) == 0o600
    document = json.loads(tables.read_text(encoding="utf-8"))
    assert document["format"] == parse_tables.FORMAT and document["key"] == "k" * 64


def test_the_cache_is_read_back_without_building(tmp_path):
    folder = tmp_path / "fmflow"
    built = parse_tables.load_or_build("k" * 64, _build, _load, folder)
    loaded = parse_tables.load_or_build("k" * 64, _no_build, _load, folder)
    for path in CORPUS:
        text = path.read_text(encoding="utf-8")
        assert loaded.parse(text) == built.parse(text), path.name


def test_the_real_parser_loads_from_the_private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    lark_parser.cache_clear()
    try:
        lark_parser()  # builds and stores
        monkeypatch.setattr(parse_tables, "_write_tables", _no_build)
        lark_parser.cache_clear()
        monkeypatch.setattr("fmflow.parser.Lark", _NoBuildLark)
        module, diagnostics = parse_text('flow f(x: str) -> str { return x }')
        assert diagnostics == [] and module.decls[0].name == "f"
    finally:
        lark_parser.cache_clear()


@pytest.mark.parametrize("mode", [0o770, 0o757, 0o777])
def test_a_folder_others_can_write_is_not_used(tmp_path, mode):
    folder = tmp_path / "fmflow"
    folder.mkdir()
    folder.chmod(mode)
    _plant_tables(folder)
    built = []
    parse_tables.load_or_build("k" * 64, lambda: built.append(1) or _build(), _load, folder)
    assert built == [1]
    assert [p.name for p in folder.iterdir()] == ["parser-" + "k" * 32 + ".json"]  # only the planted one


def test_a_linked_folder_or_file_is_not_followed(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    _plant_tables(real)
    link = tmp_path / "fmflow"
    link.symlink_to(real)
    built = []
    parse_tables.load_or_build("k" * 64, lambda: built.append(1) or _build(), _load, link)
    assert built == [1]

    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    (folder / ("parser-" + "k" * 32 + ".json")).symlink_to(real / ("parser-" + "k" * 32 + ".json"))
    parse_tables.load_or_build("k" * 64, lambda: built.append(2) or _build(), _load, folder)
    assert built == [1, 2]


def test_a_file_writable_by_others_or_for_another_grammar_is_not_read(tmp_path):
    folder = tmp_path / "fmflow"
    folder.mkdir(mode=0o700)
    planted = _plant_tables(folder)
    planted.chmod(0o666)
    built = []
    parse_tables.load_or_build("k" * 64, lambda: built.append(1) or _build(), _load, folder)
    planted.chmod(0o600)
    parse_tables.load_or_build("k" * 63 + "x", lambda: built.append(2) or _build(), _load, folder)
    assert built == [1, 2]


def test_a_damaged_file_is_rebuilt(tmp_path):
    folder = tmp_path / "fmflow"
    folder.mkdir(mode=0o700)
    name = folder / ("parser-" + "k" * 32 + ".json")
    name.write_text('{"format": 1, "key": "' + "k" * 64 + '", "tables": {"data": {}}}', encoding="utf-8")
    name.chmod(0o600)
    parser = parse_tables.load_or_build("k" * 64, _build, _load, folder)
    assert parser.parse("flow f(x: str) -> str { return x }")
    assert json.loads(name.read_text(encoding="utf-8"))["tables"]["data"]  # replaced by good tables


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to give a folder away")
def test_a_folder_owned_by_someone_else_is_not_used(tmp_path):
    folder = tmp_path / "fmflow"
    folder.mkdir(mode=0o700)
    _plant_tables(folder)
    os.chown(folder, 65534, 65534)
    built = []
    parse_tables.load_or_build("k" * 64, lambda: built.append(1) or _build(), _load, folder)
    assert built == [1]


# ------------------------------------------------------------------ helpers

def _build() -> Lark:
    return Lark(grammar_path().read_text(encoding="utf-8"), **_BUILD_OPTIONS, postlex=NewlineFilter())


def _load(tables: dict) -> Lark:
    return Lark.__new__(Lark)._load(tables, postlex=NewlineFilter(), propagate_positions=True)


def _no_build(*args):
    raise AssertionError("the tables should have come from the cache")


class _NoBuildLark(Lark):
    def __init__(self, *args, **kwargs):
        raise AssertionError("the tables should have come from the cache")


def _plant_tables(folder: Path) -> Path:
    """Good tables under the key the tests use, as another process could have left them."""
    scratch = folder.parent / "scratch"
    parse_tables.load_or_build("k" * 64, _build, _load, scratch)
    (source,) = scratch.iterdir()
    target = folder / source.name
    target.write_bytes(source.read_bytes())
    return target
