"""The project's Chroma store: opening it, its collections, and searching them.

chromadb is imported only inside functions: `import fmflow` and `fmflow check`
never pay for it. Collections use cosine distance and the registered
`FmflowEmbeddingFunction` (fmflow/retrieval/embeddings.py), so a collection
reopens in another process without being handed its embedding function. The
embedding spec a collection was created with is also kept in its metadata
(`fmflow:embedding`) and checked on every open: vectors from two different
models in one collection would make every search meaningless.
"""

from __future__ import annotations

import math
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

from .defaults import DEFAULT_EMBEDDING, DEFAULT_STORE

EMBEDDING_KEY = "fmflow:embedding"  # collection metadata: the embedding spec it was created with
DATABASE = "chroma.sqlite3"  # what makes a folder a Chroma store

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]")
_clients: dict[str, Any] = {}
_lock = threading.Lock()


class StoreError(Exception):
    """A store or collection problem, worded for the person running fmflow."""


class StoreFailure(StoreError):
    """The store was named right but cannot be used now: busy, read-only or damaged."""


@dataclass(frozen=True)
class Hit:
    id: str
    text: str
    score: float  # 1 - cosine distance: 1 same direction, 0 unrelated
    metadata: dict[str, Any] = field(default_factory=dict)


def open_store(folder: str = DEFAULT_STORE, create: bool = True):
    """The Chroma client of a store folder, one per folder per process.

    `create` (writers: `fmflow index`) makes the folder and the store in it
    when missing. Readers (retrievers) pass False: a missing folder, or one
    without a Chroma database in it, is a StoreError and nothing is created,
    so a mistyped `store:` cannot leave an empty store behind.
    Chroma keeps one system per path and refuses a second client on the same
    path with other settings, so every open of the same folder returns the
    same client.
    """
    path = os.path.abspath(folder)
    with _lock:
        client = _clients.get(path)
        if client is None:
            if create:
                prepare_store_folder(folder)
            else:
                check_existing_store(folder)
            _clients[path] = client = _new_client(folder, path)
        return client


def prepare_store_folder(folder: str) -> None:
    """Make the store folder (and its parents) if needed, or say plainly why it cannot be one."""
    if os.path.isdir(folder):
        return
    if os.path.exists(folder):
        raise StoreError(f"the store '{folder}' is a file, not a folder")
    blocking = _file_on_the_way(folder)
    if blocking:
        raise StoreError(f"the store '{folder}' cannot be made: '{blocking}' is a file")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise StoreFailure(f"cannot make the store {shown_folder(folder)}: {error.strerror or error}") from None


def _file_on_the_way(folder: str) -> str | None:
    """The first part of `folder` that exists and is not a folder, as written."""
    parts = os.path.normpath(folder).split(os.sep)
    for end in range(1, len(parts)):
        head = os.sep.join(parts[:end]) or os.sep
        if os.path.exists(head) and not os.path.isdir(head):
            return head
    return None


def check_existing_store(folder: str) -> None:
    """A StoreError unless `folder` holds a Chroma store; looks at the files only (Chroma is not opened)."""
    if not os.path.exists(folder):
        raise StoreError(f"no store at {shown_folder(folder)} (no such folder)")
    if not os.path.isdir(folder):
        raise StoreError(f"the store '{folder}' is a file, not a folder")
    if not os.path.isfile(os.path.join(folder, DATABASE)):
        raise StoreError(f"{shown_folder(folder)} is not a store (it has no {DATABASE})")


def _new_client(folder: str, path: str):
    import chromadb
    from chromadb.config import Settings

    try:
        return chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False, allow_reset=False))
    except Exception as error:  # Chroma's own types, from its Rust core or sqlite
        reason = str(error).strip() or type(error).__name__
        if "readonly" in reason.replace("-", "").replace(" ", "").lower():
            raise StoreFailure(f"the store {shown_folder(folder)} is read-only; Chroma writes to its store even "
                               f"to search: make the folder writable") from None
        raise StoreFailure(f"the store '{folder}' cannot be opened ({reason}); if it is damaged, move it away "
                           f"and index again") from None


def verify_command(folder: str, collection_name: str) -> str:
    """The command that checks and repairs a collection of a store."""
    return f"fmflow index --verify --collection {collection_name} --store {shown_folder(folder)}"


def missing_store_hint(folder: str, collection_name: str) -> str:
    """How to make the store a reader did not find, and a nearby store it may have meant."""
    command = f"fmflow index PATH --collection {collection_name}"
    if os.path.abspath(folder) != os.path.abspath(DEFAULT_STORE):
        command += f" --store {shown_folder(folder)}"
    hint = f"index documents into it first: {command}"
    close = _nearby_store(folder)
    return hint + (f"; did you mean '{close}'?" if close else "")


def _nearby_store(folder: str) -> str | None:
    """An existing store folder whose path is close to `folder` (a typo), looking two levels around it."""
    import difflib

    wanted = os.path.normpath(shown_folder(folder))
    missing = os.path.abspath(folder)  # look around the first part of the path that is not there
    while not os.path.isdir(os.path.dirname(missing)) and os.path.dirname(missing) != missing:
        missing = os.path.dirname(missing)
    base = os.path.dirname(missing)
    candidates = []
    for depth_one in _subfolders(base):
        for found in (depth_one, *_subfolders(depth_one)):
            if os.path.isfile(os.path.join(found, DATABASE)):
                candidates.append(os.path.normpath(shown_folder(found)))
    matches = difflib.get_close_matches(wanted, candidates, n=1, cutoff=0.75)
    return matches[0] if matches else None


def _subfolders(folder: str) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.path for e in entries if e.is_dir(follow_symlinks=False))[:200]
    except OSError:
        return []


def store_folder(client) -> str:
    """The folder a client opened by `open_store` keeps its data in."""
    for path, known in _clients.items():
        if known is client:
            return path
    return "the store"


def collection_names(client) -> list[str]:
    return sorted(c if isinstance(c, str) else c.name for c in client.list_collections())


def check_collection_name(name: str) -> None:
    if not _NAME.fullmatch(name) or ".." in name:
        raise StoreError(f"invalid collection name '{name}': use 3-512 letters, digits, '.', '_' or '-', "
                         "starting and ending with a letter or digit")


def collection(client, name: str, embedding: str | None = DEFAULT_EMBEDDING, base_dir: str = ".",
               create: bool = False, *, embedding_function=None):
    """A collection of the store, with cosine distance and fmflow's embedding function.

    `embedding` is the embedding spec (e.g. "builtin:minilm"); None takes the
    one the collection was created with (and `DEFAULT_EMBEDDING` for a new
    one). `create` makes a missing collection; otherwise a missing one is a
    StoreError that says how to make it. `embedding_function` replaces the
    FmflowEmbeddingFunction (tests use a small fake one).
    """
    check_collection_name(name)
    existing = collection_names(client)
    if name not in existing:
        if not create:
            known = ", ".join(existing) if existing else "none"
            raise StoreError(f"collection '{name}' not found in {shown_folder(store_folder(client))} "
                             f"(collections: {known}); index documents first: "
                             f"fmflow index PATH --collection {name}")
        spec = embedding or DEFAULT_EMBEDDING
        function = embedding_function or _embedding_function(spec, base_dir)
        try:  # get_or_create: another process may be making it at this moment
            made = client.get_or_create_collection(
                name, configuration={"hnsw": {"space": "cosine"}}, metadata={EMBEDDING_KEY: spec},
                embedding_function=function)
        except ValueError as error:
            raise StoreError(f"collection '{name}': {error}") from None
        if (made.metadata or {}).get(EMBEDDING_KEY) == spec:
            return made
        embedding, embedding_function = spec, function  # not ours after all: check it below

    from chromadb.errors import NotFoundError

    try:
        model = client.get_collection(name, embedding_function=None)
    except NotFoundError:
        raise StoreError(f"collection '{name}' not found in {shown_folder(store_folder(client))}") from None
    stored = (model.metadata or {}).get(EMBEDDING_KEY)
    persisted = (model.configuration_json or {}).get("embedding_function") or {}
    if embedding is None:
        if embedding_function is None:
            if stored is None:
                raise StoreError(f"collection '{name}' was not made by fmflow index (it has no "
                                 f"'{EMBEDDING_KEY}' metadata); give its embedding explicitly")
            embedding_function = _embedding_function(stored, base_dir)
    elif stored is not None and stored != embedding:
        raise StoreError(
            f"collection '{name}' was indexed with embedding '{stored}', not '{embedding}': vectors of "
            f"different models cannot be compared; use embedding '{stored}' (retriever key `embedding`, "
            f"or --embedding), or index into a new collection")
    function = embedding_function or _embedding_function(embedding, base_dir)
    if persisted.get("name") and persisted.get("name") != function.name():
        raise StoreError(f"collection '{name}' was created with the embedding function "
                         f"'{persisted.get('name')}', not fmflow's; index into a new collection")
    try:
        return client.get_collection(name, embedding_function=function)
    except ValueError as error:  # chroma's own embedding-function conflict check
        raise StoreError(f"collection '{name}': {error}") from None


def _embedding_function(spec: str, base_dir: str):
    from .embeddings import FmflowEmbeddingFunction, register

    register()
    return FmflowEmbeddingFunction(spec, base_dir)


def shown_folder(folder: str) -> str:
    """A folder as the user named it: relative to the current folder when below it."""
    try:
        relative = os.path.relpath(folder)
    except ValueError:  # another drive on Windows
        return folder
    return folder if relative.startswith("..") else relative


def chroma_where(where: dict | None) -> dict | None:
    """A `where: { k: v, … }` mapping as Chroma wants it: several keys joined with $and."""
    if not where:
        return None
    plain = [key for key in where if not key.startswith("$")]
    if len(where) <= 1 or not plain:
        return dict(where)
    return {"$and": [{key: value} for key, value in where.items()]}


def search(collection, query: str, k: int = 4, where: dict | None = None, *, min_score: float | None = None,
           diverse: bool = False, mmr_lambda: float = 0.5) -> list[Hit]:
    """The `k` chunks nearest to `query`, best first, each at least `min_score`.

    `where` filters on metadata (`{"source": "docs/a.md"}`; several keys must
    all match). `diverse` picks the k by maximal marginal relevance among the
    4k nearest, so near-duplicate chunks do not crowd out the rest.
    """
    if k < 1 or not query.strip():
        return []
    count = collection.count()
    if count == 0:
        return []
    fetch = min(count, 4 * k if diverse else k)
    include = ["documents", "metadatas", "distances"] + (["embeddings"] if diverse else [])
    query_embedding = None
    if diverse:
        query_embedding = [float(x) for x in collection._embed(input=[query], is_query=True)[0]]
        result = collection.query(query_embeddings=[query_embedding], n_results=fetch,
                                  where=chroma_where(where), include=include)
    else:
        result = collection.query(query_texts=[query], n_results=fetch, where=chroma_where(where), include=include)
    ids = result["ids"][0]
    documents = (result.get("documents") or [[None] * len(ids)])[0]
    metadatas = (result.get("metadatas") or [[None] * len(ids)])[0]
    distances = result["distances"][0]
    hits = [Hit(id=id_, text=text or "", score=1.0 - float(distance), metadata=dict(metadata or {}))
            for id_, text, metadata, distance in zip(ids, documents, metadatas, distances)]
    # A damaged entry (a NaN vector) has no meaningful score: it is left out, not ranked at random.
    usable = [i for i, hit in enumerate(hits) if math.isfinite(hit.score)]
    if diverse and usable:
        vectors = [[float(x) for x in result["embeddings"][0][i]] for i in usable]
        hits = [hits[usable[i]] for i in mmr_select(query_embedding, vectors, k, mmr_lambda)]
    else:
        hits = sorted((hits[i] for i in usable), key=lambda hit: -hit.score)
    if min_score is not None:
        hits = [hit for hit in hits if hit.score >= min_score]
    return hits[:k]


def mmr(collection, query: str, k: int = 4, where: dict | None = None, *, min_score: float | None = None,
        lambda_: float = 0.5) -> list[Hit]:
    """Diverse results: `search` with maximal marginal relevance over the 4k nearest chunks."""
    return search(collection, query, k, where, min_score=min_score, diverse=True, mmr_lambda=lambda_)


def mmr_select(query: Sequence[float], candidates: Sequence[Sequence[float]], k: int,
               lambda_: float = 0.5) -> list[int]:
    """Indices of `k` candidates chosen by maximal marginal relevance, in the order chosen.

    Each step takes the candidate with the best
    `lambda_ * sim(query, c) - (1 - lambda_) * max(sim(c, s) for s already chosen)`,
    sim being cosine similarity. lambda_ 1 is plain relevance; 0 is pure diversity.
    """
    if k <= 0 or not candidates:
        return []
    units = [_unit(vector) for vector in candidates]
    q = _unit(query)
    relevance = [_dot(q, u) for u in units]
    chosen: list[int] = []
    closest = [-math.inf] * len(units)  # each candidate's highest similarity to a chosen one
    remaining = set(range(len(units)))
    while remaining and len(chosen) < k:
        def value(i: int) -> float:
            penalty = closest[i] if chosen else 0.0
            return lambda_ * relevance[i] - (1.0 - lambda_) * penalty

        best = max(sorted(remaining), key=value)  # sorted: ties go to the more relevant (earlier) one
        chosen.append(best)
        remaining.discard(best)
        for i in remaining:
            closest[i] = max(closest[i], _dot(units[i], units[best]))
    return chosen


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else [0.0 for _ in vector]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b))
