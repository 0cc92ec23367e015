"""`fmflow index`: documents → chunks → the store, incrementally (LANGUAGE.md §7).

Each chunk's id is stable: sha1 of `source#chunk`, `source` being the file's
path relative to the current folder (absolute when the file is outside it),
with forward slashes. Its metadata holds `source`, `chunk`, `title` and `hash`
(sha1 of the chunk's text), so indexing the same files again re-embeds only
the chunks whose text changed, and a file that shrank loses its extra chunks.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .chunking import split_text
from .documents import SUPPORTED, DocumentError, find_documents, read_document
from .store import (
    DEFAULT_EMBEDDING, DEFAULT_STORE, StoreError, check_collection_name, collection, collection_names, open_store,
)

BATCH = 128

# progress(done, total, path): `done` files of `total` are finished; `path` is the next one (None at the end).
Progress = Callable[[int, int, "str | None"], None]


class IndexingError(Exception):
    """Wrong arguments for indexing (a missing path, bad sizes): a usage error."""


@dataclass
class IndexSummary:
    files: int = 0  # files read and chunked
    chunks: int = 0  # chunks those files have now
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0


def source_name(path: str) -> str:
    """The `source` metadata of a file: relative to the current folder, else absolute; '/' separators."""
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # another drive on Windows
        relative = absolute
    chosen = absolute if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative
    return chosen.replace(os.sep, "/")


def chunk_id(source: str, chunk: int) -> str:
    return hashlib.sha1(f"{source}#{chunk}".encode("utf-8")).hexdigest()


def check_sizes(chunk_size: int, chunk_overlap: int) -> None:
    if chunk_size < 1:
        raise IndexingError(f"--chunk-size must be a positive number of characters, got {chunk_size}")
    if chunk_overlap < 0:
        raise IndexingError(f"--chunk-overlap cannot be negative, got {chunk_overlap}")
    if chunk_overlap >= chunk_size:
        raise IndexingError(f"--chunk-overlap ({chunk_overlap}) must be smaller than --chunk-size ({chunk_size})")


def index_paths(paths: list[str], collection_name: str, store: str = DEFAULT_STORE, chunk_size: int = 1000,
                chunk_overlap: int = 150, prune: bool = False, embedding: str = DEFAULT_EMBEDDING,
                progress: Progress | None = None, *, base_dir: str = ".",
                embedding_function=None) -> IndexSummary:
    """Index the files at `paths` (folders recursively) into a collection of the store.

    Raises IndexingError for wrong arguments (checked before the store is
    touched), StoreError for a collection that cannot be used (another
    embedding), and lets EmbeddingError through. Unreadable, unsupported and
    empty files are listed in `skipped` with the reason.
    """
    began = time.perf_counter()
    if not paths:
        raise IndexingError("no files or folders to index")
    check_sizes(chunk_size, chunk_overlap)
    try:
        check_collection_name(collection_name)
    except StoreError as error:
        raise IndexingError(str(error)) from None
    files, missing = find_documents(list(paths))
    if missing:
        raise IndexingError("cannot read " + ", ".join(f"'{p}'" for p in missing) + ": no such file or folder")

    summary = IndexSummary()
    if not files:
        summary.skipped.append((", ".join(paths), f"no {' '.join(SUPPORTED)} files there"))
        if not prune:  # nothing to do: the store is not even created
            summary.seconds = time.perf_counter() - began
            return summary
    if embedding_function is None:  # an unknown spec or a missing model package fails here, before any work
        from .embeddings import get_embedder

        get_embedder(embedding, base_dir)
    client = open_store(store)
    exists = collection_name in collection_names(client)
    # An existing collection is opened (and its embedding checked) before any work; a new
    # one is made when the first chunk is written, so a run that indexes nothing leaves none.
    pending = _Writes(summary, lambda: collection(client, collection_name, embedding, base_dir=base_dir,
                                                  create=True, embedding_function=embedding_function))
    if exists:
        pending.open()
    sources: set[str] = set()
    for done, path in enumerate(files):
        if progress:
            progress(done, len(files), path)
        source = source_name(path)
        sources.add(source)
        try:
            document = read_document(path)
        except DocumentError as error:
            summary.skipped.append((path, str(error)))
            continue  # its chunks from an earlier run stay: the file may be back to normal next time
        chunks = split_text(document.text, chunk_size, chunk_overlap)
        old = pending.chunks_of(source)
        if not chunks:
            pdf = path.lower().endswith(".pdf")
            summary.skipped.append((path, "no text to index (a scanned PDF?)" if pdf else "empty file"))
            pending.delete(list(old))
            continue
        summary.files += 1
        summary.chunks += len(chunks)
        fresh: set[str] = set()
        for number, text in enumerate(chunks):
            id_ = chunk_id(source, number)
            fresh.add(id_)
            metadata = {"source": source, "chunk": number, "title": document.title,
                        "hash": hashlib.sha1(text.encode("utf-8")).hexdigest()}
            before = old.get(id_)
            if before is None:
                pending.upsert(id_, text, metadata, added=True)
            elif before.get("hash") != metadata["hash"]:
                pending.upsert(id_, text, metadata, added=False)
            elif any(before.get(key) != value for key, value in metadata.items()):
                pending.relabel(id_, metadata)  # same text, new title: no new embedding
            else:
                summary.unchanged += 1
        pending.delete([id_ for id_ in old if id_ not in fresh])
    if prune:
        everything = pending.chunks_of(None)
        pending.delete([id_ for id_, metadata in everything.items() if metadata.get("source") not in sources])
    pending.flush()
    if progress:
        progress(len(files), len(files), None)
    summary.seconds = time.perf_counter() - began
    return summary


class _Writes:
    """Upserts, metadata-only updates and deletions, sent in batches of BATCH."""

    def __init__(self, summary: IndexSummary, make: Callable[[], Any]) -> None:
        self.summary = summary
        self.make = make
        self.target = None
        self.upserts: list[tuple[str, str, dict[str, Any]]] = []
        self.pending_counts: list[bool] = []
        self.relabels: list[tuple[str, dict[str, Any]]] = []

    def open(self):
        if self.target is None:
            self.target = self.make()
        return self.target

    def chunks_of(self, source: str | None) -> dict[str, dict[str, Any]]:
        """{id: metadata} of the chunks stored for `source` (None: every chunk); {} with no collection."""
        if self.target is None:
            return {}
        found = self.target.get(where={"source": source} if source is not None else None, include=["metadatas"])
        return {id_: metadata or {} for id_, metadata in zip(found["ids"], found["metadatas"])}

    def upsert(self, id_: str, text: str, metadata: dict[str, Any], added: bool) -> None:
        self.upserts.append((id_, text, metadata))
        self.pending_counts.append(added)
        if len(self.upserts) >= BATCH:
            self._send_upserts()

    def relabel(self, id_: str, metadata: dict[str, Any]) -> None:
        self.relabels.append((id_, metadata))
        if len(self.relabels) >= BATCH:
            self._send_relabels()

    def delete(self, ids: list[str]) -> None:
        for start in range(0, len(ids), BATCH):
            batch = ids[start:start + BATCH]
            self.open().delete(ids=batch)
            self.summary.removed += len(batch)

    def flush(self) -> None:
        self._send_upserts()
        self._send_relabels()

    def _send_upserts(self) -> None:
        if not self.upserts:
            return
        ids, texts, metadatas = (list(column) for column in zip(*self.upserts))
        self.open().upsert(ids=ids, documents=texts, metadatas=metadatas)
        added = sum(self.pending_counts)
        self.summary.added += added
        self.summary.updated += len(ids) - added
        self.upserts, self.pending_counts = [], []

    def _send_relabels(self) -> None:
        if not self.relabels:
            return
        ids, metadatas = (list(column) for column in zip(*self.relabels))
        self.open().update(ids=ids, metadatas=metadatas)  # same text: no new embedding
        self.summary.updated += len(ids)
        self.relabels = []
