"""The steps of a pipeline that see every record: dedupe, sample and embed.

Each runs in the pipeline's own process over the file of the stage before, in
source order, and writes the file of its own stage (same line format as
pipeline_records.py) under a temporary name, renamed into place when
complete. It is deterministic (the same input gives the same output, on any
engine), so a run killed in the middle of one simply runs it again on resume:
`embed` upserts with stable ids, so running it twice stores each record once.
The budget refusing a model call (BudgetExceeded) stops the step the same way,
rather than failing the record it was evaluating.

Two passes: the first decides, record by record, which records go on (and
upserts for `embed`); the second writes them. Memory holds one flag per
record, plus the hashes (and, for `near:`, the texts) of `dedupe`'s keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from typing import Any, Iterator

from .. import ast
from ..pipeline_steps import Part
from ..runtime.budget import BudgetExceeded
from .records import DataError, describe_error

EMBED_BATCH = 256  # records upserted into Chroma at a time


def stage_lines(path: str) -> Iterator[dict[str, Any]]:
    """The lines of a stage file, in order."""
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                yield json.loads(raw)


def stage_records(path: str) -> Iterator[tuple[int, Any]]:
    """(source line, record) of every record a stage file passes on."""
    for data in stage_lines(path):
        for record in data.get("out", ()):
            yield data["line"], record


class WholeStep:
    """One whole-data step over a stage file; ``run`` writes the next stage file and gives (in, out)."""

    def __init__(self, state, decl: ast.PipelineDecl, step: Part, in_type, workdir: str) -> None:
        self.state = state
        self.decl = decl
        self.step = step
        self.in_type = in_type
        self.workdir = workdir
        self.errors: dict[int, tuple[int, str, Any]] = {}  # record index → (source line, error, record)

    async def run(self, source: str, target: str) -> tuple[int, int]:
        keep = await self._decide(source)
        temporary = target + ".tmp"
        with open(temporary, "wb") as out:
            _write_kept(out, stage_lines(source), keep, self.errors, self.step.label())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
        return len(keep), sum(keep)

    async def _decide(self, source: str) -> bytearray:
        kind = self.step.kind
        if kind == "sample":
            return await self._sample(source)
        if kind == "dedupe":
            return await self._dedupe(source)
        return await self._embed(source)

    async def _value(self, expr: ast.Node, record: Any) -> Any:
        from ..runtime.evaluate import Evaluator

        return await Evaluator(self.state, self.decl, {"record": record}).eval(expr)

    async def _constant(self, name: str, default: Any = None) -> Any:
        from ..runtime.evaluate import Evaluator

        expr = self.step.args.get(name)
        return default if expr is None else await Evaluator(self.state, self.decl).eval(expr)

    def _typed(self, record: Any) -> Any:
        return self.state.validate(self.in_type, record, "a record")

    # ----------------------------------------------------------- sample
    async def _sample(self, source: str) -> bytearray:
        size, seed = await self._constant("n"), await self._constant("seed")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise DataError(f"{self.step.label()}: the sample size must be a whole number of at least 1, got {size!r}")
        total = sum(1 for _ in stage_records(source))
        keep = bytearray(total)
        for index in random.Random(seed).sample(range(total), min(size, total)):
            keep[index] = 1
        return keep

    # ----------------------------------------------------------- dedupe
    async def _dedupe(self, source: str) -> bytearray:
        near = await self._constant("near")
        keep, seen, texts, candidates = bytearray(), set(), [], []
        for index, (line, record) in enumerate(stage_records(source)):
            keep.append(0)
            try:
                key = _plain_json(await self._value(self.step.args["key"], self._typed(record)))
            except BudgetExceeded:   # the step stops whole; a resumed run does it again
                raise
            except Exception as error:
                self.errors[index] = (line, describe_error(error), record)
                continue
            digest = hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode()).digest()
            if digest in seen:
                continue
            seen.add(digest)
            keep[index] = 1
            if near is not None:
                texts.append(str(key))
                candidates.append(index)
        if near is not None and len(texts) > 1:
            from ..resources import stdlib_module

            for index, kept in zip(candidates, stdlib_module("std_minilm").near_duplicate_mask(texts, near)):
                keep[index] = int(kept)
        return keep

    # ------------------------------------------------------------ embed
    async def _embed(self, source: str) -> bytearray:
        writer = _Upserts(await self._collection())
        keep = bytearray()
        for index, (line, record) in enumerate(stage_records(source)):
            keep.append(0)
            try:
                entry = await self._entry(line, self._typed(record))
            except BudgetExceeded:
                raise
            except Exception as error:
                self.errors[index] = (line, describe_error(error), record)
                continue
            writer.add(*entry)
            keep[index] = 1
        writer.flush()
        return keep

    async def _collection(self):
        from ..retrieval.store import DEFAULT_STORE, StoreError, collection, open_store

        into = await self._constant("into")
        store = await self._constant("store", DEFAULT_STORE)
        store = store if os.path.isabs(store) else os.path.join(self.workdir, store)
        try:
            return collection(open_store(store), into, create=True, base_dir=self.workdir)
        except StoreError as error:
            raise DataError(f"{self.step.label()}: {error}") from None

    async def _entry(self, line: int, record: Any) -> tuple[str, str, dict[str, Any]]:
        args = self.step.args
        text = await self._value(args["text"], record)
        if not isinstance(text, str):
            raise DataError(f"the text to embed is {type(text).__name__}, not str")
        given = await self._value(args["id"], record) if "id" in args else None
        metadata = await self._value(args["metadata"], record) if "metadata" in args else {}
        meta = {"pipeline": self.decl.name, "line": line, **_chroma_metadata(_plain_json(metadata) or {})}
        return (str(given) if given is not None else text_id(text)), text, meta


def text_id(text: str) -> str:
    """The stable id of an embedded text without `id:`: the same text is one entry of the collection."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class _Upserts:
    """Upserts sent EMBED_BATCH at a time; within a batch the last record with an id wins."""

    def __init__(self, collection) -> None:
        self.collection = collection
        self.pending: dict[str, tuple[str, dict[str, Any]]] = {}

    def add(self, id_: str, text: str, metadata: dict[str, Any]) -> None:
        self.pending[id_] = (text, metadata)
        if len(self.pending) >= EMBED_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        ids = list(self.pending)
        try:
            self.collection.upsert(ids=ids, documents=[self.pending[i][0] for i in ids],
                                   metadatas=[self.pending[i][1] for i in ids])
        except Exception as error:  # Chroma's own errors (a full disk, a locked store)
            raise DataError(f"cannot write to the collection '{self.collection.name}': {describe_error(error)}") \
                from None
        self.pending = {}


def _chroma_metadata(metadata: Any) -> dict[str, Any]:
    """Metadata Chroma can hold: scalars as they are, other values as JSON text, nulls left out."""
    if not isinstance(metadata, dict):
        raise DataError(f"metadata must be a dict, got {type(metadata).__name__}")
    flat = {}
    for key, value in metadata.items():
        if value is None:
            continue
        flat[str(key)] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
    return flat


def _plain_json(value: Any) -> Any:
    from ..runtime.outputs import to_jsonable

    return to_jsonable(value)


def _write_kept(out, lines, keep: bytearray, errors: dict, step: str) -> None:
    """The next stage file: each line's kept records; a record that failed becomes an error line."""
    index = 0
    for data in lines:
        records = data.get("out", ())
        kept = []
        for record in records:
            if keep[index]:
                kept.append(record)
            elif index in errors:
                line, error, failed = errors[index]
                out.write(_line({"line": line, "error": error, "step": step, "record": failed, "counts": []}))
            index += 1
        if kept:
            out.write(_line({"line": data["line"], "out": kept, "counts": []}))


def _line(data: dict) -> bytes:
    return (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")
