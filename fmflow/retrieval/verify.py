"""`fmflow index --verify`: find a collection's damaged entries and repair them.

Each entry is checked for
- metadata: fmflow's `source`, `chunk` and `hash`, and an id equal to
  `chunk_id(source, chunk)`;
- text: the sha1 of the stored document is the `hash` recorded with it;
- embedding: it can be read, has the collection's dimension, only finite
  numbers and unit length (fmflow's embedders all normalise; bytes read past
  a vector's end do not);
- the vector index: a search with the entry's own embedding finds it among
  the nearest ten (or finds a copy of it at distance 0); the search is
  approximate, so what it misses is looked for again among the nearest
  WIDE_NEIGHBOURS before it counts as lost.

Entries failing the first two checks are removed (indexing their file again
adds them back); entries without a usable embedding are embedded again from
their text. When anything is damaged the collection is rebuilt rather than
changed in place: Chroma refuses to delete or update ids that its vector
index lost, and a vector index with wrong neighbours is only mended by
building it again. The rebuild copies the sound entries with their
embeddings (nothing is embedded twice) into a new collection, deletes the old
one and gives the new one its name. A rebuild cut short is finished or
started over by the next verification (`_recover`).

The caller holds the store's lock (fmflow/retrieval/lock.py).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .indexing import chunk_id
from .store import EMBEDDING_KEY, StoreFailure, collection, collection_names

PAGE = 500  # entries read at a time
NEIGHBOURS = 10
# The vector index (HNSW) searches a beam as wide as the results asked for: a sound entry
# in a crowd of near-copies can be missed by the nearest-ten search, all but never by one this wide.
WIDE_NEIGHBOURS = 500
_SAME = 1e-4  # cosine distance under which two vectors are the same

OK, NO_METADATA, BAD_HASH, BAD_EMBEDDING, MISPLACED = "ok", "metadata", "hash", "embedding", "misplaced"


@dataclass
class VerifyReport:
    collection: str
    entries: int = 0
    no_metadata: int = 0
    bad_hash: int = 0
    bad_embedding: int = 0
    misplaced: int = 0
    re_embedded: int = 0
    removed: int = 0

    @property
    def damaged(self) -> int:
        return self.no_metadata + self.bad_hash + self.bad_embedding + self.misplaced

    def line(self) -> str:
        head = f"verified {self.collection}: {self.entries} entr{'y' if self.entries == 1 else 'ies'}"
        if not self.damaged:
            return f"{head}, none damaged"
        kinds = [(self.no_metadata, "without valid metadata"), (self.bad_hash, "whose text does not match its hash"),
                 (self.bad_embedding, "without a usable embedding"),
                 (self.misplaced, "not found by a search for their own embedding")]
        what = ", ".join(f"{count} {label}" for count, label in kinds if count)
        done = ", ".join(f"{count} {label}" for count, label in ((self.re_embedded, "re-embedded"),
                                                                 (self.removed, "removed")) if count)
        return f"{head}, {self.damaged} damaged ({what}); {done or 'the vector index was rebuilt'}"


def verify_collection(client, name: str, base_dir: str = ".", *, embedding_function=None) -> VerifyReport:
    """Check every entry of collection `name`; rebuild it without the damage when there is any."""
    _recover(client, name, base_dir, embedding_function)
    found = collection(client, name, None, base_dir, embedding_function=embedding_function)
    dimension = _dimension(found)
    report = VerifyReport(name)
    for ids, metadatas, documents in _pages(found):
        verdicts, _ = _check(found, ids, metadatas, documents, dimension)
        report.entries += len(ids)
        counts = Counter(verdicts)
        report.no_metadata += counts[NO_METADATA]
        report.bad_hash += counts[BAD_HASH]
        report.bad_embedding += counts[BAD_EMBEDDING]
        report.misplaced += counts[MISPLACED]
    if report.damaged:
        _rebuild(client, found, name, base_dir, embedding_function, dimension, report)
    return report


def rebuild_name(name: str) -> str:
    """The temporary collection a rebuild of `name` fills."""
    return "fmflow-rebuild-" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:16]


def _recover(client, name: str, base_dir: str, embedding_function) -> None:
    """A rebuild that was cut short: started over (the original is there) or finished (only the rename was left)."""
    temp = rebuild_name(name)
    names = collection_names(client)
    if temp not in names:
        return
    if name in names:
        client.delete_collection(temp)
    else:
        collection(client, temp, None, base_dir, embedding_function=embedding_function).modify(name=name)


def _pages(found):
    """(ids, metadatas, documents) of the collection, PAGE entries at a time."""
    offset = 0
    while True:
        try:
            page = found.get(limit=PAGE, offset=offset, include=["metadatas", "documents"])
        except Exception as error:  # Chroma's own types
            raise StoreFailure(f"collection '{found.name}' cannot be read ({error}); move the store away "
                               f"and index again") from None
        if not page["ids"]:
            return
        yield page["ids"], page["metadatas"], page["documents"]
        offset += len(page["ids"])


def _check(found, ids: list[str], metadatas: list, documents: list, dimension: int | None,
           probe_index: bool = True) -> tuple[list[str], dict[str, list[float]]]:
    """A verdict per entry, and the embeddings of the entries whose embedding is sound."""
    verdicts = []
    for id_, metadata, document in zip(ids, metadatas, documents):
        metadata = metadata or {}
        source, chunk, recorded = metadata.get("source"), metadata.get("chunk"), metadata.get("hash")
        if not isinstance(source, str) or not isinstance(chunk, int) or id_ != chunk_id(source, chunk):
            verdicts.append(NO_METADATA)
        elif hashlib.sha1((document or "").encode("utf-8")).hexdigest() != recorded:
            verdicts.append(BAD_HASH)
        else:
            verdicts.append(OK)
    vectors = _read_embeddings(found, [id_ for id_, verdict in zip(ids, verdicts) if verdict == OK])
    for i, id_ in enumerate(ids):
        if verdicts[i] == OK and not _usable(vectors.get(id_), dimension):
            verdicts[i] = BAD_EMBEDDING
            vectors.pop(id_, None)
    lost = _not_found_by_their_embedding(found, vectors) if probe_index else set()
    return [MISPLACED if id_ in lost else verdict for id_, verdict in zip(ids, verdicts)], vectors


def _read_embeddings(found, ids: list[str]) -> dict[str, Any]:
    """{id: embedding} for the ids whose embedding can be read; halves a batch Chroma fails on."""
    if not ids:
        return {}
    try:
        got = found.get(ids=ids, include=["embeddings"])
    except Exception:  # e.g. "Error getting embedding": one bad id fails the whole request
        if len(ids) == 1:
            return {}
        half = len(ids) // 2
        return {**_read_embeddings(found, ids[:half]), **_read_embeddings(found, ids[half:])}
    return {id_: vector for id_, vector in zip(got["ids"], got["embeddings"]) if vector is not None}


def _usable(vector, dimension: int | None) -> bool:
    """Readable, of the collection's length, finite and of unit length (fmflow's embedders normalise)."""
    if vector is None or len(vector) == 0 or (dimension is not None and len(vector) != dimension):
        return False
    numbers = [float(x) for x in vector]
    return all(math.isfinite(x) for x in numbers) and abs(math.sqrt(sum(x * x for x in numbers)) - 1.0) < 1e-2


def _not_found_by_their_embedding(found, vectors: dict[str, Any]) -> set[str]:
    """The ids that a search with their own embedding does not find (a broken vector index)."""
    count = found.count() if vectors else 0
    missed = _missed(found, vectors, list(vectors), min(NEIGHBOURS, count))
    return _missed(found, vectors, sorted(missed), min(WIDE_NEIGHBOURS, count)) if missed else missed


def _missed(found, vectors: dict[str, Any], ids: list[str], neighbours: int) -> set[str]:
    """The ids among `ids` that are neither among the `neighbours` nearest to their embedding nor
    at distance 0 of it."""
    if not ids:
        return set()
    try:
        nearest = found.query(query_embeddings=[[float(x) for x in vectors[i]] for i in ids],
                              n_results=neighbours, include=["distances"])
    except Exception:  # the index cannot even be searched
        return set(ids)
    return {id_ for id_, got, distances in zip(ids, nearest["ids"], nearest["distances"])
            if id_ not in got and not (distances and distances[0] <= _SAME)}


def _dimension(found) -> int | None:
    """The collection's vector length: as Chroma recorded it, else the most common one stored."""
    recorded = getattr(getattr(found, "_model", None), "dimension", None)
    if isinstance(recorded, int) and recorded > 0:
        return recorded
    try:
        sample = found.get(limit=PAGE, include=["embeddings"])["embeddings"]
    except Exception:
        return None
    lengths = Counter(len(vector) for vector in sample if vector is not None and len(vector))
    return lengths.most_common(1)[0][0] if lengths else None


def _rebuild(client, found, name: str, base_dir: str, embedding_function, dimension: int | None,
             report: VerifyReport) -> None:
    temp = rebuild_name(name)
    spec = (found.metadata or {}).get(EMBEDDING_KEY)
    fresh = collection(client, temp, spec, base_dir, create=True, embedding_function=embedding_function)
    for ids, metadatas, documents in _pages(found):
        verdicts, vectors = _check(found, ids, metadatas, documents, dimension, probe_index=False)
        rows = list(zip(ids, metadatas, documents, verdicts))
        keep = [row for row in rows if row[3] in (OK, MISPLACED)]
        again = [row for row in rows if row[3] == BAD_EMBEDDING]
        if keep:
            fresh.add(ids=[r[0] for r in keep], metadatas=[r[1] for r in keep], documents=[r[2] for r in keep],
                      embeddings=[[float(x) for x in vectors[r[0]]] for r in keep])
        if again:  # embedded by the collection's embedding function, from the stored text
            fresh.add(ids=[r[0] for r in again], metadatas=[r[1] for r in again], documents=[r[2] for r in again])
        report.re_embedded += len(again)
        report.removed += len(rows) - len(keep) - len(again)
    client.delete_collection(name)
    fresh.modify(name=name)
