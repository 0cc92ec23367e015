"""Retriever calls: `kb(query)`, `kb(query, k: 8, where: {…})` → list[Doc].

The store is Chroma on disk (fmflow/retrieval/store.py); queries are embedded
with the retriever's `embedding`. Chroma's client is synchronous, so a
search runs in a worker thread and the event loop keeps going.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from .. import ast
from ..checks.blocks import settings_problem
from ..retrieval.store import DEFAULT_EMBEDDING, DEFAULT_STORE  # chromadb itself loads on first search
from ..types import DOC
from .errors import FlowRuntimeError
from .evaluate import Evaluator
from .spans import CURRENT_SPAN

DEFAULT_K = 4


@dataclass(frozen=True)
class RetrieverConfig:
    collection: str
    k: int = DEFAULT_K
    min_score: float | None = None
    where: dict[str, Any] | None = None
    store: str = DEFAULT_STORE
    embedding: str = DEFAULT_EMBEDDING
    mmr: bool = False


async def retriever_config(run, decl: ast.RetrieverDecl) -> RetrieverConfig:
    evaluator = Evaluator(run, decl)
    values = {e.key: await evaluator.eval(e.value) for e in decl.entries}
    problem = settings_problem("retriever", decl.name, values)
    if problem is not None:
        raise FlowRuntimeError(problem)
    store = values.pop("store", DEFAULT_STORE)
    # LANGUAGE.md §2: the store folder is under the current directory (the run's workdir).
    values["store"] = store if os.path.isabs(store) else os.path.join(run.options.workdir, store)
    return RetrieverConfig(**values)


async def call_retriever(run, decl: ast.RetrieverDecl, args: dict[str, Any]) -> list[Any]:
    from ..retrieval.store import chroma_where

    config = await retriever_config(run, decl)
    query = args["query"]
    k = config.k if args.get("k") is None else args["k"]
    problem = settings_problem("retriever", decl.name, {"k": k})
    if problem is not None:
        raise FlowRuntimeError(problem)
    where = chroma_where({**(config.where or {}), **(args.get("where") or {})})
    span = run.trace_start("retrieval", decl.name, CURRENT_SPAN.get(), None,
                           inputs={"query": query, "k": k, "where": where}, collection=config.collection)
    try:
        hits = await asyncio.to_thread(_search, run, decl, config, query, k, where)
    except BaseException as error:
        run.trace_end(span, error=error)
        raise
    docs = [run.validate(DOC, {"id": h.id, "text": h.text, "score": h.score, "metadata": h.metadata},
                         f"a passage of retriever '{decl.name}'") for h in hits]
    if span is not None:
        span.set(ids=[h.id for h in hits], scores=[round(h.score, 4) for h in hits])
    run.trace_end(span, output=len(docs))
    return docs


def _search(run, decl: ast.RetrieverDecl, config: RetrieverConfig, query: str, k: int, where):
    from ..retrieval import store

    try:  # reading never makes a store: a mistyped `store:` is an error, not a new empty store
        client = store.open_store(config.store, create=False)
    except store.StoreFailure as error:
        raise FlowRuntimeError(f"retriever '{decl.name}': {error}") from None
    except store.StoreError as error:
        hint = store.missing_store_hint(config.store, config.collection)
        raise FlowRuntimeError(f"retriever '{decl.name}': {error}; {hint}") from None
    try:
        found = store.collection(client, config.collection, config.embedding, run.program.folder_of(decl))
        return store.search(found, query, k, where, min_score=config.min_score, diverse=config.mmr)
    except store.StoreError as error:
        raise FlowRuntimeError(f"retriever '{decl.name}': {error}") from None
    except Exception as error:  # Chroma and the embedder raise their own types
        raise FlowRuntimeError(f"retriever '{decl.name}' failed: {_failure(error, config)}") from None


def _failure(error: Exception, config: RetrieverConfig) -> str:
    """Chroma's internal errors come from a damaged store: say how to repair it."""
    from chromadb.errors import InternalError

    from ..retrieval.store import verify_command

    if isinstance(error, InternalError):
        return (f"the store may be damaged (Chroma: {error}); repair it with: "
                f"{verify_command(config.store, config.collection)}")
    return f"{type(error).__name__}: {error}"
