"""Evaluating metric expressions: the runtime's evaluator plus the metric built-ins."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .. import ast
from ..runtime.errors import FlowRuntimeError
from ..runtime.evaluate import Evaluator, plain
from .functions import METRIC_FUNCTIONS, cosine

SIMILARITY_MODEL = "builtin:minilm"


class Similarity:
    """``similarity(a, b)``: the cosine of two texts' MiniLM embeddings, each text embedded once."""

    def __init__(self, base_dir: str, spec: str = SIMILARITY_MODEL) -> None:
        self.base_dir = base_dir
        self.spec = spec
        self._vectors: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _embed(self, texts: list[str]) -> list[list[float]]:
        from ..retrieval.embeddings import get_embedder

        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
            if missing:
                for text, vector in zip(missing, get_embedder(self.spec, self.base_dir).embed(missing)):
                    self._vectors[text] = vector
            return [self._vectors[t] for t in texts]

    async def __call__(self, a: Any, b: Any) -> float:
        if not isinstance(a, str) or not isinstance(b, str):
            raise FlowRuntimeError(f"similarity() compares two texts, got {type(a).__name__} and {type(b).__name__}")
        u, v = await asyncio.to_thread(self._embed, [a, b])
        return cosine(u, v)


class MetricEvaluator(Evaluator):
    """Evaluates metrics: ``record`` and ``output`` are bound, the metric built-ins are callable."""

    def __init__(self, run, owner: ast.Decl, values: dict[str, Any] | None = None,
                 futures: dict | None = None, *, similarity: Similarity | None = None) -> None:
        super().__init__(run, owner, values, futures)
        self.similarity = similarity

    def child(self, **values: Any) -> "MetricEvaluator":
        return MetricEvaluator(self.run, self.owner, {**self.values, **values}, self.futures,
                               similarity=self.similarity)

    async def eval(self, expr: ast.Node) -> Any:
        if isinstance(expr, ast.Call) and self._is_metric_function(expr.func):
            values = [plain(v) for v in await self.eval_many([a.value for a in expr.args])]
            return await self._metric_function(expr.func.id, values)
        return await super().eval(expr)

    def _is_metric_function(self, func: ast.Node) -> bool:
        return (isinstance(func, ast.Name) and func.version is None and func.id in METRIC_FUNCTIONS
                and func.id not in self.values and self.run.program.lookup(func.id, within=self.owner) is None)

    async def _metric_function(self, name: str, values: list[Any]) -> Any:
        if name == "similarity":
            if self.similarity is None:
                raise FlowRuntimeError("similarity() is not available here")
            return await self.similarity(*values)
        try:
            return METRIC_FUNCTIONS[name].impl(*values)
        except Exception as error:
            raise FlowRuntimeError(f"{name}() failed: {error}") from None
