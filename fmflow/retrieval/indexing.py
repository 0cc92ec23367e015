"""`fmflow index`: documents → chunks → the store, incrementally (LANGUAGE.md §7).

Each chunk's id is stable: sha1 of `source#chunk`, `source` being the file's
path relative to the current folder (absolute when the file is outside it),
with forward slashes. Its metadata holds `source`, `chunk`, `title` and `hash`
(sha1 of the chunk's text), so indexing the same files again re-embeds only
the chunks whose text changed, and a file that shrank loses its extra chunks.
A chunk whose text already appeared in the same file is stored once: it
would add nothing to a search, and hundreds of identical vectors make
Chroma's vector index (HNSW) lose the way to other entries.

A file is read whole (up to the size limit), then chunked, embedded and
stored BATCH chunks at a time as the chunker produces them, so memory holds
one file's text and one batch, whatever the file's size. Which files are
read is fmflow/retrieval/files.py. The store's lock is held from before the
store is opened until its last write (lock.py); a collection whose last
write was cut short is verified first (verify.py).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .chunking import iter_chunks
from .documents import Document, DocumentError, read_document
from .defaults import DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_FILE_MB
from .files import SUPPORTED, FoundFile, Listing, find_files, limit_bytes, printable
from .lock import HeldLock, store_lock
from .store import (
    DEFAULT_EMBEDDING, DEFAULT_STORE, StoreError, StoreFailure, check_collection_name, check_existing_store,
    collection, collection_names, open_store, shown_folder, store_folder, verify_command,
)

if TYPE_CHECKING:
    from .verify import VerifyReport

BATCH = 128

# progress(files_done, files_total, chunks, path): `chunks` chunks of the files so far are chunked and
# stored; `path` is the file being indexed (None at the end). Called per file and per BATCH chunks.
Progress = Callable[[int, int, int, "str | None"], None]


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
    repeated: list[tuple[str, int]] = field(default_factory=list)  # (path, chunks equal to an earlier one of it)
    verified: list["VerifyReport"] = field(default_factory=list)
    seconds: float = 0.0


def source_name(path: str) -> str:
    """The `source` metadata of a file: relative to the current folder, else absolute; '/' separators."""
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # another drive on Windows
        relative = absolute
    chosen = absolute if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative
    return printable(chosen.replace(os.sep, "/"))


def chunk_id(source: str, chunk: int) -> str:
    return hashlib.sha1(f"{source}#{chunk}".encode("utf-8")).hexdigest()


def check_sizes(chunk_size: int, chunk_overlap: int) -> None:
    if chunk_size < 1:
        raise IndexingError(f"--chunk-size must be a positive number of characters, got {chunk_size}")
    if chunk_overlap < 0:
        raise IndexingError(f"--chunk-overlap cannot be negative, got {chunk_overlap}")
    if chunk_overlap >= chunk_size:
        raise IndexingError(f"--chunk-overlap ({chunk_overlap}) must be smaller than --chunk-size ({chunk_size})")


def _check_arguments(paths: list[str], collection_name: str, chunk_size: int, chunk_overlap: int,
                     max_file_mb: float | None, lock_timeout: float, verify: bool) -> None:
    if not paths and not verify:
        raise IndexingError("give files or folders to index, or --verify to check the collection")
    check_sizes(chunk_size, chunk_overlap)
    if max_file_mb is not None and not (math.isfinite(max_file_mb) and max_file_mb >= 0):
        raise IndexingError(f"--max-file-mb must be a size in megabytes (0 for no limit), got {max_file_mb}")
    if not (math.isfinite(lock_timeout) and lock_timeout >= 0):
        raise IndexingError(f"--lock-timeout must be a number of seconds, got {lock_timeout}")
    try:
        check_collection_name(collection_name)
    except StoreError as error:
        raise IndexingError(str(error)) from None


def index_paths(paths: list[str], collection_name: str, store: str = DEFAULT_STORE, chunk_size: int = 1000,
                chunk_overlap: int = 150, prune: bool = False, embedding: str = DEFAULT_EMBEDDING,
                progress: Progress | None = None, *, base_dir: str = ".", embedding_function=None,
                max_file_mb: float | None = DEFAULT_MAX_FILE_MB, verify: bool = False,
                lock_timeout: float = DEFAULT_LOCK_TIMEOUT, notify: Callable[[str], None] | None = None,
                holder: str = "fmflow index") -> IndexSummary:
    """Index the files at `paths` (folders recursively) into a collection of the store.

    `verify` checks (and repairs) the collection first; with no paths, that is
    all. Raises IndexingError for wrong arguments (checked before the store is
    touched), StoreError for a collection that cannot be used (another
    embedding), StoreFailure for a store that is busy past `lock_timeout`,
    read-only or damaged, and lets EmbeddingError through. Unreadable,
    unsupported, special, oversized and empty files are listed in `skipped`
    with the reason. `notify` receives notes for the user (waiting for the
    lock, verifying after an unfinished run).
    """
    began = time.perf_counter()
    _check_arguments(paths, collection_name, chunk_size, chunk_overlap, max_file_mb, lock_timeout, verify)
    listing = find_files(list(paths)) if paths else Listing()
    if listing.missing:
        raise IndexingError("cannot read " + ", ".join(f"'{p}'" for p in listing.missing)
                            + ": no such file or folder")
    summary = IndexSummary(skipped=list(listing.skipped))
    if paths and not listing.files:
        if not listing.skipped:
            summary.skipped.append((", ".join(paths), f"no {' '.join(SUPPORTED)} files there"))
        if not prune and not verify:  # nothing to do: the store is not even created
            summary.seconds = time.perf_counter() - began
            return summary
    if not paths:
        check_existing_store(store)  # verifying needs a store: never make one for it
    elif embedding_function is None:  # an unknown spec or a missing model package fails here, before any work
        from .embeddings import get_embedder

        get_embedder(embedding, base_dir)
    with store_lock(store, holder, lock_timeout, notify) as lock:
        client = open_store(store)
        _verify_first(client, lock, store, collection_name, verify, not paths, base_dir, embedding_function, notify,
                      summary)
        if paths:
            job = _Job(client, lock, collection_name, embedding, base_dir, embedding_function, summary)
            job.run(listing.files, chunk_size, chunk_overlap, prune, limit_bytes(max_file_mb), progress)
    summary.seconds = time.perf_counter() - began
    return summary


def _verify_first(client, lock: HeldLock, store: str, name: str, verify: bool, must_exist: bool, base_dir: str,
                  embedding_function, notify: Callable[[str], None] | None, summary: IndexSummary) -> None:
    """Verify the collections whose last write did not finish, and `name` when asked to."""
    from .verify import verify_collection

    existing = set(collection_names(client))
    wanted = []
    for other in lock.unfinished():
        if other not in existing:
            lock.finish(other)  # gone: nothing left to verify
            continue
        if notify:
            notify(f"the last run into {shown_folder(store)} did not finish; verifying collection {other}")
        wanted.append(other)
    if verify and name not in wanted:
        if name in existing:
            wanted.append(name)
        elif must_exist:
            collection(client, name, None)  # raises: not found, with the command that makes it
    for other in wanted:
        lock.begin(other)
        own = embedding_function if other == name else None
        summary.verified.append(verify_collection(client, other, base_dir, embedding_function=own))
        lock.finish(other)


class _Job:
    """Indexing the listed files into one collection, the store's lock held."""

    def __init__(self, client, lock: HeldLock, name: str, embedding: str, base_dir: str, embedding_function,
                 summary: IndexSummary) -> None:
        self.summary = summary
        self.lock = lock
        self.name = name
        make = lambda: collection(client, name, embedding, base_dir=base_dir, create=True,  # noqa: E731
                                  embedding_function=embedding_function)
        self.writes = _Writes(summary, make, lambda: lock.begin(name), name, store_folder(client))
        # An existing collection is opened (and its embedding checked) before any work; a new
        # one is made when the first chunk is written, so a run that indexes nothing leaves none.
        if name in collection_names(client):
            self.writes.open()

    def run(self, files: list[FoundFile], chunk_size: int, chunk_overlap: int, prune: bool, max_bytes: int | None,
            progress: Progress | None) -> None:
        sources: set[str] = set()
        for done, found in enumerate(files):
            tick = (lambda: progress(done, len(files), self.summary.chunks, found.path)) if progress else None
            if tick:
                tick()
            source = source_name(found.path)
            sources.add(source)
            try:
                document = read_document(found, max_bytes)
            except DocumentError as error:
                self.summary.skipped.append((found.path, str(error)))
                continue  # its chunks from an earlier run stay: the file may be back to normal next time
            self._index(document, source, chunk_size, chunk_overlap, tick)
        if prune:
            everything = self.writes.chunks_of(None)
            self.writes.delete([id_ for id_, metadata in everything.items() if metadata.get("source") not in sources])
        self.writes.flush()
        self.lock.finish(self.name)
        if progress:
            progress(len(files), len(files), self.summary.chunks, None)

    def _index(self, document: Document, source: str, chunk_size: int, chunk_overlap: int,
               tick: Callable[[], None] | None) -> None:
        summary, writes = self.summary, self.writes
        old = writes.chunks_of(source)
        fresh: set[str] = set()
        hashes: set[str] = set()
        repeated = 0
        for number, text in enumerate(iter_chunks(document.text, chunk_size, chunk_overlap)):
            digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
            if digest in hashes:  # many identical vectors cut other entries off in Chroma's vector index
                repeated += 1
                continue
            hashes.add(digest)
            id_ = chunk_id(source, number)
            fresh.add(id_)
            metadata = {"source": source, "chunk": number, "title": document.title, "hash": digest}
            before = old.get(id_)
            if before is None:
                writes.upsert(id_, text, metadata, added=True)
            elif before.get("hash") != metadata["hash"]:
                writes.upsert(id_, text, metadata, added=False)
            elif any(before.get(key) != value for key, value in metadata.items()):
                writes.relabel(id_, metadata)  # same text, new title: no new embedding
            else:
                summary.unchanged += 1
            summary.chunks += 1
            if tick and (number + 1) % BATCH == 0:
                tick()
        if repeated:
            summary.repeated.append((document.path, repeated))
        if not fresh:
            pdf = document.path.lower().endswith(".pdf")
            summary.skipped.append((document.path, "no text to index (a scanned PDF?)" if pdf else "empty file"))
        else:
            summary.files += 1
        writes.delete([id_ for id_ in old if id_ not in fresh])


class _Writes:
    """Upserts, metadata-only updates and deletions, sent in batches of BATCH.

    `before_first_write` runs once, before anything is written (it marks the
    collection as being written, for the next run to verify if this one dies).
    Chroma's errors while writing become a StoreFailure saying how to check
    the store.
    """

    def __init__(self, summary: IndexSummary, make: Callable[[], Any], before_first_write: Callable[[], None],
                 name: str, store: str) -> None:
        self.summary = summary
        self.make = make
        self.before_first_write: Callable[[], None] | None = before_first_write
        self.name = name
        self.store = store
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
        found = self._chroma("reading", lambda: self.target.get(
            where={"source": source} if source is not None else None, include=["metadatas"]))
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
            self._write(lambda: self.open().delete(ids=batch))
            self.summary.removed += len(batch)

    def flush(self) -> None:
        self._send_upserts()
        self._send_relabels()

    def _send_upserts(self) -> None:
        if not self.upserts:
            return
        ids, texts, metadatas = (list(column) for column in zip(*self.upserts))
        self._write(lambda: self.open().upsert(ids=ids, documents=texts, metadatas=metadatas))
        added = sum(self.pending_counts)
        self.summary.added += added
        self.summary.updated += len(ids) - added
        self.upserts, self.pending_counts = [], []

    def _send_relabels(self) -> None:
        if not self.relabels:
            return
        ids, metadatas = (list(column) for column in zip(*self.relabels))
        self._write(lambda: self.open().update(ids=ids, metadatas=metadatas))  # same text: no new embedding
        self.summary.updated += len(ids)
        self.relabels = []

    def _write(self, call: Callable[[], Any]) -> Any:
        if self.before_first_write is not None:
            self.before_first_write()
            self.before_first_write = None
        return self._chroma("writing to", call)

    def _chroma(self, doing: str, call: Callable[[], Any]) -> Any:
        from chromadb.errors import ChromaError, InvalidArgumentError

        try:
            return call()
        except InvalidArgumentError as error:  # e.g. an embedding model that gave NaN vectors
            raise StoreFailure(f"{doing} collection '{self.name}' failed: {error}") from None
        except ChromaError as error:  # the embedder's own errors pass through untouched
            raise StoreFailure(f"{doing} collection '{self.name}' failed ({error}); the store may be damaged, "
                               f"repair it with: {verify_command(self.store, self.name)}") from None
