"""The store under `fmflow index`: one writer at a time, damage found and repaired, odd store folders.

Through the CLI in subprocesses, with a tiny BERT as the embedding; the
store is looked into afterwards with fmflow's own store functions.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_models import tiny_text
from index_cli import (
    StoreUnreadable, assert_sound, command, env, index, rows, skipped, unprivileged_prefix, write,
)

WORDS = "the cat dog ran fast slow model prompt retry index vector store chunk file query answer user cache".split()


@pytest.fixture
def embedding(tiny_bert) -> str:
    return f"hf:{tiny_bert}"


def corpus(folder: Path, files: int, paragraphs: int, seed: str) -> None:
    """Files of short paragraphs: with --chunk-size 100, one chunk per paragraph."""
    for i in range(files):
        rng = random.Random(f"{seed}{i}")
        write(folder, f"f{i:03d}.md", "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) + "."
                                                for _ in range(paragraphs)))


# ------------------------------------------------------------------ one writer at a time

def test_two_index_runs_at_once_both_finish_and_leave_a_sound_store(tmp_path, embedding):
    # Enough chunks that each run writes its vector index to disk (Chroma does so every 1,000).
    corpus(tmp_path / "a", 15, 80, "a")
    corpus(tmp_path / "b", 15, 80, "b")
    options = ["--collection", "docs", "--chunk-size", "100", "--chunk-overlap", "0", "--embedding", embedding]
    runs = [subprocess.Popen(command("index", folder, *options), cwd=tmp_path, env=env(), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for folder in ("a", "b")]
    try:
        outputs = [run.communicate(timeout=600) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    for run, (stdout, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert stdout.startswith("indexed 15 files, 1200 chunks (1200 added"), stdout
    entries = assert_sound(tmp_path / ".fmflow" / "store")
    assert len(entries) == 2400
    assert {row["source"].split("/")[0] for row in entries.values()} == {"a", "b"}
    check = index(tmp_path, "--verify", "--collection", "docs")
    assert check.returncode == 0, check.stderr
    assert "verified docs: 2400 entries, none damaged" in check.stdout


def test_a_held_lock_is_waited_for_with_a_message_then_given_up_on(tmp_path, embedding):
    from fmflow.retrieval.lock import store_lock

    write(tmp_path, "docs/a.md", "Alpha.")
    store = tmp_path / ".fmflow" / "store"
    with store_lock(str(store), "fmflow index elsewhere --collection docs"):
        refused = index(tmp_path, "docs", "--collection", "docs", "--embedding", embedding, "--lock-timeout", "1")
        assert refused.returncode == 1
        lines = refused.stderr.splitlines()
        assert lines[0].startswith(f"fmflow: the store {os.path.join('.fmflow', 'store')} is in use by process "
                                   f"{os.getpid()} (fmflow index elsewhere --collection docs, since ")
        assert lines[0].endswith("); waiting up to 1 s (--lock-timeout)")
        assert lines[-1] == (f"fmflow: error: the store {os.path.join('.fmflow', 'store')} is still in use by "
                             f"process {os.getpid()} after 1 s; try again when it is done, or wait longer "
                             f"with --lock-timeout SECONDS")
        assert refused.stdout == ""
        # Released while the next run waits: that run goes on.
        waiting = subprocess.Popen(command("index", "docs", "--collection", "docs", "--embedding", embedding,
                                           "--lock-timeout", "120"),
                                   cwd=tmp_path, env=env(), text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        try:
            notice = waiting.stderr.readline()  # the holder lets go once the waiter has said it waits
        except BaseException:
            waiting.kill()
            raise
    stdout, stderr = waiting.communicate(timeout=180)
    assert waiting.returncode == 0, stderr
    assert "is in use by process" in notice and notice.rstrip().endswith("waiting up to 120 s (--lock-timeout)")
    assert stdout.startswith("indexed 1 file, 1 chunk (1 added")


# ------------------------------------------------------------------ damage: found and repaired

def damage(store: Path) -> dict[str, str]:
    """Break entries the way a crash or a second writer does; returns {what: id}.

    Through Chroma (in another process, so this one keeps no stale view of the
    store): an entry without metadata and a changed text. Behind Chroma's back,
    in its log of writes (where a small collection's vectors live): a NaN
    vector, a vector of the wrong size and a vector gone.
    """
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from fmflow.retrieval.store import collection, open_store
found = collection(open_store({str(store)!r}, create=False), "docs", None)
ids = found.get(where={{"source": "docs/d3.md"}})["ids"]
found.add(ids=["stray"], documents=["an entry nobody indexed"])
vector = found.get(ids=ids, include=["embeddings"])["embeddings"][0]
found.update(ids=ids, documents=["tampered text"], embeddings=[[float(x) for x in vector]])
"""
    done = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    database = sqlite3.connect(store / "chroma.sqlite3")
    by_source = dict(database.execute(
        "SELECT m.string_value, e.embedding_id FROM embeddings e JOIN embedding_metadata m ON m.id = e.id "
        "WHERE m.key = 'source'").fetchall())
    with database:
        def first_write(source: str) -> int:
            return database.execute("SELECT min(seq_id) FROM embeddings_queue WHERE id = ?",
                                    (by_source[source],)).fetchone()[0]
        database.execute("UPDATE embeddings_queue SET vector = ? WHERE seq_id = ?",
                         (struct.pack("32f", *[float("nan")] * 32), first_write("docs/d0.md")))
        database.execute("UPDATE embeddings_queue SET vector = ? WHERE seq_id = ?",
                         (struct.pack("7f", *[0.5] * 7), first_write("docs/d1.md")))
        database.execute("DELETE FROM embeddings_queue WHERE seq_id = ?", (first_write("docs/d2.md"),))
    database.close()
    return {"nan": by_source["docs/d0.md"], "dimension": by_source["docs/d1.md"],
            "missing": by_source["docs/d2.md"], "hash": by_source["docs/d3.md"], "metadata": "stray"}


def test_verify_finds_and_repairs_damaged_entries(tmp_path, embedding):
    for i in range(6):
        write(tmp_path, f"docs/d{i}.md", tiny_text(i))
    assert index(tmp_path, "docs", "--collection", "docs", "--embedding", embedding).returncode == 0
    store = tmp_path / ".fmflow" / "store"
    broken = damage(store)
    with pytest.raises(StoreUnreadable):
        rows(store)  # the damage is real: reading every embedding fails

    repaired = index(tmp_path, "docs", "--collection", "docs", "--embedding", embedding, "--verify")
    assert repaired.returncode == 0, repaired.stderr
    lines = repaired.stdout.splitlines()
    assert lines[0] == ("verified docs: 7 entries, 5 damaged (1 without valid metadata, 1 whose text does not match "
                        "its hash, 3 without a usable embedding); 3 re-embedded, 2 removed")
    assert lines[1].startswith("indexed 6 files, 6 chunks (1 added, 0 updated, 0 removed)")
    entries = assert_sound(store)
    assert sorted(row["source"] for row in entries.values()) == [f"docs/d{i}.md" for i in range(6)]
    assert set(broken.values()) - {"stray"} <= set(entries)  # the same ids, repaired in place
    assert "tampered text" not in {row["text"] for row in entries.values()}

    again = index(tmp_path, "--verify", "--collection", "docs")
    assert again.returncode == 0 and again.stdout.strip() == "verified docs: 6 entries, none damaged"


def test_verify_without_paths_needs_a_collection_that_exists(tmp_path):
    result = index(tmp_path, "--verify", "--collection", "docs")
    assert result.returncode == 2
    assert "fmflow: error: no store at" in result.stderr
    assert not (tmp_path / ".fmflow").exists()
    nothing = index(tmp_path, "--collection", "docs")
    assert nothing.returncode == 2 and "give files or folders to index, or --verify" in nothing.stderr


def test_a_run_killed_while_writing_is_verified_by_the_next_run(tmp_path, embedding):
    corpus(tmp_path / "docs", 30, 60, "k")
    options = ["--collection", "docs", "--chunk-size", "100", "--chunk-overlap", "0", "--embedding", embedding]
    run = subprocess.Popen(command("index", "docs", *options), cwd=tmp_path, env=env(FMFLOW_PROGRESS_SECONDS="0"),
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for line in run.stderr:  # killed once it has stored a few batches
            if "files," in line and int(line.split("files, ")[1].split()[0]) >= 300:
                break
        run.send_signal(signal.SIGKILL)
    finally:
        run.kill()
        run.communicate(timeout=60)
    assert run.returncode == -signal.SIGKILL
    after = index(tmp_path, "docs", *options)
    assert after.returncode == 0, after.stderr
    assert (f"fmflow: the last run into {os.path.join('.fmflow', 'store')} did not finish; "
            f"verifying collection docs") in after.stderr
    assert after.stdout.splitlines()[0].startswith("verified docs: ")
    assert len(assert_sound(tmp_path / ".fmflow" / "store")) == 1800
    quiet = index(tmp_path, "docs", *options)
    assert "did not finish" not in quiet.stderr and not quiet.stdout.startswith("verified")


# ------------------------------------------------------------------ odd store folders

def test_a_store_that_is_a_file_or_inside_a_file(tmp_path, embedding):
    write(tmp_path, "docs/a.md", "Alpha.")
    write(tmp_path, "notes.md", "not a folder")
    for store, message in [("notes.md", "the store 'notes.md' is a file, not a folder"),
                           ("notes.md/store", "the store 'notes.md/store' cannot be made: 'notes.md' is a file")]:
        result = index(tmp_path, "docs", "--collection", "docs", "--embedding", embedding, "--store", store)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[-1] == f"fmflow: error: {message}"
    assert (tmp_path / "notes.md").read_text() == "not a folder"


def test_a_store_that_is_not_a_chroma_store(tmp_path, embedding):
    write(tmp_path, "docs/a.md", "Alpha.")
    write(tmp_path, "junk/chroma.sqlite3", b"this is not a database" * 100)
    result = index(tmp_path, "docs", "--collection", "docs", "--embedding", embedding, "--store", "junk")
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1].startswith("fmflow: error: the store 'junk' cannot be opened (")
    assert result.stderr.rstrip().endswith("if it is damaged, move it away and index again")


def test_a_read_only_store_is_a_clear_error_for_writing_and_searching(tmp_path, embedding):
    prefix = unprivileged_prefix()
    write(tmp_path, "docs/a.md", "Alpha about retries.")
    assert index(tmp_path, "docs", "--collection", "docs", "--embedding", embedding).returncode == 0
    store = tmp_path / ".fmflow" / "store"
    write(tmp_path, "docs/b.md", "Beta is new.")
    modes = {path: path.stat().st_mode for path in [store, *store.rglob("*")]}
    for path in modes:
        path.chmod(modes[path] & ~0o222)
    try:
        result = index(tmp_path, "docs", "--collection", "docs", "--embedding", embedding, unprivileged=True)
        flow = write(tmp_path, "kb.fmflow", f'retriever kb {{\n  collection: "docs"\n  embedding: "{embedding}"\n}}\n'
                     'flow ask(q: str) -> list[Doc] {\n  return kb(q)\n}\n')
        searched = subprocess.run(prefix + command("run", flow, "-i", "q=retries", "--json", "--no-cache"),
                                  cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=180)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (f"fmflow: error: cannot write to the store "
                                              f"{os.path.join('.fmflow', 'store')}: Permission denied")
    assert searched.returncode == 1, searched.stderr
    assert "Traceback" not in searched.stderr
    assert (f"retriever 'kb': the store {os.path.join('.fmflow', 'store')} is read-only; Chroma writes to its "
            f"store even to search: make the folder writable") in searched.stderr
    assert skipped(result) == {}
