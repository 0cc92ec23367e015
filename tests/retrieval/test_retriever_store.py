"""A retriever reads the store and never makes one (through `fmflow run`)."""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

import pytest

from index_cli import fmflow, index, write


@pytest.fixture
def indexed(tmp_path, tiny_bert) -> Path:
    """A project with docs indexed into `.fmflow/store`, collection `docs`."""
    write(tmp_path, "docs/retry.md", "Retrying a prompt asks the model again.")
    write(tmp_path, "docs/cats.txt", "Cats sleep most of the day.")
    assert index(tmp_path, "docs", "--collection", "docs", "--embedding", f"hf:{tiny_bert}").returncode == 0
    return tmp_path


def flow(project: Path, tiny_bert: Path, store: str | None = None) -> Path:
    store_line = f'  store: "{store}"\n' if store is not None else ""
    return write(project, "kb.fmflow", f'retriever kb {{\n  collection: "docs"\n  embedding: "hf:{tiny_bert}"\n'
                 f'{store_line}}}\nflow ask(q: str) -> list[Doc] {{\n  return kb(q)\n}}\n')


def run(project: Path, path: Path):
    return fmflow(project, "run", path, "-i", "q=retrying", "--json", "--no-cache")


def test_a_mistyped_store_is_not_created_and_the_right_one_suggested(indexed, tiny_bert):
    result = run(indexed, flow(indexed, tiny_bert, ".fmflw/store"))
    assert result.returncode == 1
    assert not (indexed / ".fmflw").exists()
    message = result.stderr
    assert f"retriever 'kb': no store at {os.path.join('.fmflw', 'store')} (no such folder); index documents " \
           f"into it first: fmflow index PATH --collection docs --store {os.path.join('.fmflw', 'store')}" in message
    assert f"did you mean '{os.path.join('.fmflow', 'store')}'?" in message


def test_a_folder_that_is_not_a_store_is_left_untouched(indexed, tiny_bert):
    before = sorted(p.name for p in (indexed / "docs").iterdir())
    result = run(indexed, flow(indexed, tiny_bert, "docs"))
    assert result.returncode == 1
    assert "retriever 'kb': docs is not a store (it has no chroma.sqlite3)" in result.stderr
    assert sorted(p.name for p in (indexed / "docs").iterdir()) == before


def test_no_store_at_all_names_the_index_command(tmp_path, tiny_bert):
    result = run(tmp_path, flow(tmp_path, tiny_bert))
    assert result.returncode == 1
    assert (f"no store at {os.path.join('.fmflow', 'store')} (no such folder); index documents into it first: "
            f"fmflow index PATH --collection docs") in result.stderr
    assert "did you mean" not in result.stderr
    assert not (tmp_path / ".fmflow" / "store").exists()


def test_the_right_store_still_answers(indexed, tiny_bert):
    result = run(indexed, flow(indexed, tiny_bert))
    assert result.returncode == 0, result.stderr
    assert "docs/retry.md" in result.stdout


BY_SOURCE = ("(SELECT e.embedding_id FROM embeddings e JOIN embedding_metadata m ON m.id = e.id "
             "WHERE m.key = 'source' AND m.string_value = ?)")


def damage_queue(project: Path, statement: str, *values) -> None:
    """Change Chroma's log of writes (where the vectors of a small collection live) behind its back."""
    database = sqlite3.connect(project / ".fmflow" / "store" / "chroma.sqlite3")
    with database:
        database.execute(statement, values)
    database.close()


def test_an_entry_with_a_nan_vector_is_left_out(indexed, tiny_bert):
    damage_queue(indexed, f"UPDATE embeddings_queue SET vector = ? WHERE id = {BY_SOURCE}",
                 struct.pack("32f", *[float("nan")] * 32), "docs/retry.md")
    result = run(indexed, flow(indexed, tiny_bert))
    assert result.returncode == 0, result.stderr
    assert "NaN" not in result.stdout and "docs/retry.md" not in result.stdout
    assert "docs/cats.txt" in result.stdout


def test_a_search_that_trips_on_damage_says_how_to_repair(indexed, tiny_bert):
    damage_queue(indexed, f"DELETE FROM embeddings_queue WHERE id = {BY_SOURCE}", "docs/cats.txt")
    path = write(indexed, "where.fmflow", f'retriever kb {{\n  collection: "docs"\n  embedding: "hf:{tiny_bert}"\n'
                 '  where: { source: "docs/cats.txt" }\n}\nflow ask(q: str) -> list[Doc] {\n  return kb(q)\n}\n')
    result = run(indexed, path)
    assert result.returncode == 1
    assert ("retriever 'kb' failed: the store may be damaged (Chroma: Error executing plan: Internal error: Error "
            "finding id); repair it with: fmflow index --verify --collection docs --store "
            f"{os.path.join('.fmflow', 'store')}") in result.stderr
