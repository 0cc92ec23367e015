"""What `fmflow index` reads: links, special files, sizes, permissions, odd contents (through the CLI).

Every case runs `python -m fmflow index` in a subprocess with a tiny BERT as
the embedding (fast; retrieval quality is not the point here) and looks into
the store afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from index_cli import assert_sound, index, skipped, unprivileged_prefix, write


@pytest.fixture
def embedding(tiny_bert) -> str:
    return f"hf:{tiny_bert}"


def sources(store: Path) -> dict[str, str]:
    """{source: the text of its chunks} in the store's `docs` collection."""
    found: dict[str, str] = {}
    for row in assert_sound(store).values():
        found[row["source"]] = found.get(row["source"], "") + row["text"]
    return found


# ------------------------------------------------------------------ links

def test_links_leaving_the_indexed_folders_are_not_followed(tmp_path, embedding):
    outside = write(tmp_path, "outside/secret.txt", "TOPSECRET root:$6$hash")
    write(tmp_path, "outside/folder/more.md", "TOPSECRET in a folder")
    project = tmp_path / "project"
    docs = project / "docs"
    write(docs, "a.md", "Alpha text about retries.")
    write(docs, ".drafts/draft.md", "A draft kept in a hidden folder.")
    write(project, "shared/guide.md", "A shared guide.")
    os.symlink(outside, docs / "notes.txt")                       # a file outside: refused
    os.symlink(tmp_path / "outside" / "folder", docs / "linked")  # a folder outside: refused
    os.symlink(docs / ".drafts" / "draft.md", docs / "draft.md")  # inside the folder: followed
    os.symlink(project / "shared", docs / "guides")               # into another folder named: followed
    os.symlink(docs, docs / "again")                              # a folder holding the link: a loop
    os.symlink("loop-b.md", docs / "loop-a.md")
    os.symlink("loop-a.md", docs / "loop-b.md")                   # links pointing at each other
    os.symlink("gone.md", docs / "dangling.md")

    result = index(project, "docs", "shared", "--collection", "docs", "--embedding", embedding)
    assert result.returncode == 0, result.stderr
    found = sources(project / ".fmflow" / "store")
    assert sorted(found) == ["docs/a.md", "docs/draft.md", "shared/guide.md"]  # the guide once, by its own name
    assert not any("TOPSECRET" in text for text in found.values())
    notes = skipped(result)
    assert notes[os.path.join("docs", "notes.txt")] == f"a link to {outside}, outside the folders being indexed"
    assert notes[os.path.join("docs", "linked")] == \
        f"a link to {tmp_path / 'outside' / 'folder'}, outside the folders being indexed"
    assert notes[os.path.join("docs", "again")] == f"a link to {docs}, a folder that contains it (a loop)"
    assert notes[os.path.join("docs", "loop-a.md")] == "a loop of symbolic links"
    assert notes[os.path.join("docs", "loop-b.md")] == "a loop of symbolic links"
    assert notes[os.path.join("docs", "dangling.md")] == "a broken link (to gone.md)"
    assert len(notes) == 6, result.stderr


def test_a_link_named_on_the_command_line_is_taken_as_named(tmp_path, embedding):
    target = write(tmp_path, "elsewhere/real.md", "Named through a link.")
    project = tmp_path / "project"
    project.mkdir()
    os.symlink(target, project / "named.md")
    os.symlink(tmp_path / "elsewhere", project / "folder")
    result = index(project, "named.md", "folder", "--collection", "docs", "--embedding", embedding)
    assert result.returncode == 0, result.stderr
    assert sorted(sources(project / ".fmflow" / "store")) == ["named.md"]  # the folder's file is the same file
    assert skipped(result) == {}


# ------------------------------------------------------------------ special and large files

def test_fifos_and_devices_are_skipped_not_waited_for(tmp_path, embedding):
    write(tmp_path, "docs/good.md", "Good text.")
    os.mkfifo(tmp_path / "docs" / "pipe.md")
    os.symlink("/dev/zero", tmp_path / "zero.md")
    result = index(tmp_path, "docs", "zero.md", "--collection", "docs", "--embedding", embedding, timeout=120)
    assert result.returncode == 0, result.stderr
    assert skipped(result) == {os.path.join("docs", "pipe.md"): "it is a pipe (FIFO), not a regular file",
                               "zero.md": "it is a character device, not a regular file"}
    assert sorted(sources(tmp_path / ".fmflow" / "store")) == ["docs/good.md"]


def test_files_over_the_size_limit_are_skipped_until_the_limit_is_raised(tmp_path, embedding):
    write(tmp_path, "docs/small.md", "Small text.")
    write(tmp_path, "docs/big.txt", "Many words in a big file. " * 800)  # 20,800 bytes
    limited = index(tmp_path, "docs", "--collection", "docs", "--embedding", embedding, "--max-file-mb", "0.01")
    assert limited.returncode == 0, limited.stderr
    assert skipped(limited) == {os.path.join("docs", "big.txt"): "20.8 KB, over the 10.0 KB limit (--max-file-mb)"}
    raised = index(tmp_path, "docs", "--collection", "docs", "--embedding", embedding, "--max-file-mb", "1")
    assert raised.returncode == 0 and skipped(raised) == {}
    assert sorted(sources(tmp_path / ".fmflow" / "store")) == ["docs/big.txt", "docs/small.md"]


@pytest.mark.parametrize("value", ["-1", "nan", "lots"])
def test_a_bad_size_limit_is_a_usage_error(tmp_path, value):
    write(tmp_path, "docs/a.md", "A.")
    result = index(tmp_path, "docs", "--collection", "docs", "--max-file-mb", value)
    assert result.returncode == 2
    assert "--max-file-mb" in result.stderr
    assert not (tmp_path / ".fmflow").exists()


# ------------------------------------------------------------------ permissions

def test_unreadable_files_and_folders_are_skipped_with_the_reason(tmp_path, embedding):
    unprivileged_prefix()  # skips when file permissions cannot be tested here
    write(tmp_path, "docs/good.md", "Good text.")
    secret = write(tmp_path, "docs/secret.md", "Locked text.")
    write(tmp_path, "docs/private/inside.md", "Inside a locked folder.")
    secret.chmod(0)
    (tmp_path / "docs" / "private").chmod(0)
    try:
        result = index(tmp_path, "docs", "--collection", "docs", "--embedding", embedding, unprivileged=True)
    finally:
        (tmp_path / "docs" / "private").chmod(0o755)
        secret.chmod(0o644)
    assert result.returncode == 0, result.stderr
    assert skipped(result) == {os.path.join("docs", "secret.md"): "permission denied",
                               os.path.join("docs", "private"): "cannot list the folder: permission denied"}
    assert sorted(sources(tmp_path / ".fmflow" / "store")) == ["docs/good.md"]


# ------------------------------------------------------------------ contents

def test_binary_empty_and_odd_contents(tmp_path, embedding):
    write(tmp_path, "docs/good.md", "Good text.")
    write(tmp_path, "docs/empty.md", "")
    write(tmp_path, "docs/image.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    write(tmp_path, "docs/late-binary.md", b"Looks like text. " * 1000 + b"\x00\x01\x02\x03")  # NUL after 8 KB
    write(tmp_path, "docs/latin.md", "café".encode("latin-1"))
    write(tmp_path, "docs/one-line.txt", "x" * 300_000)
    result = index(tmp_path, "docs", "--collection", "docs", "--embedding", embedding)
    assert result.returncode == 0, result.stderr
    assert skipped(result) == {
        os.path.join("docs", "empty.md"): "empty file",
        os.path.join("docs", "image.md"): "binary file, not text",
        os.path.join("docs", "late-binary.md"): "binary file, not text",
        os.path.join("docs", "latin.md"): "not UTF-8 text (byte 0xe9 at offset 3)",
    }
    # The word is cut into 300 identical pieces of 1,000 characters, stored once: 300 identical vectors
    # made Chroma's vector index lose the way to good.md (assert_sound searches for every entry).
    assert f"fmflow: {os.path.join('docs', 'one-line.txt')}: 299 chunks repeating an earlier one of the file, " \
           "stored once" in result.stderr.splitlines()
    found = sources(tmp_path / ".fmflow" / "store")
    assert found == {"docs/good.md": "Good text.", "docs/one-line.txt": "x" * 1000}


def test_a_heading_with_a_huge_run_of_spaces_and_a_name_that_is_not_utf8(tmp_path, embedding):
    write(tmp_path, "docs/spaces.md", "# a" + " " * 100_000 + "b\n\nBody text.")  # once quadratic in the title
    (tmp_path / "docs").joinpath(os.fsdecode(b"caf\xe9.txt")).write_text("Coffee notes.", encoding="utf-8")
    result = index(tmp_path, "docs", "--collection", "docs", "--embedding", embedding, timeout=300)
    assert result.returncode == 0, result.stderr
    found = assert_sound(tmp_path / ".fmflow" / "store")
    assert sorted(row["source"] for row in found.values()) == ["docs/caf\\xe9.txt", "docs/spaces.md"]
    assert {row["title"] for row in found.values()} == {"caf\\xe9.txt", "a" + " " * 100_000 + "b"}


def test_a_file_named_twice_or_through_dot_paths_is_indexed_once(tmp_path, embedding):
    write(tmp_path, "docs/a.md", "Alpha.")
    result = index(tmp_path, "docs", "docs/a.md", "./docs/../docs/a.md", "--collection", "docs",
                   "--embedding", embedding)
    assert result.returncode == 0, result.stderr
    assert list(sources(tmp_path / ".fmflow" / "store")) == ["docs/a.md"]

