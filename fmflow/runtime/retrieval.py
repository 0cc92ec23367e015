"""Retriever calls. The Chroma store and its embedding model are not part of
the runtime yet, so a retriever can only answer through a test's mock."""

from __future__ import annotations

from typing import Any

from .. import ast
from .errors import FlowRuntimeError


async def call_retriever(run, decl: ast.RetrieverDecl, args: dict[str, Any]) -> Any:
    raise FlowRuntimeError(
        f"retriever '{decl.name}' cannot run yet: fmflow has no vector store support in this version; "
        f"mock it in a test (`mock: {{ {decl.name}: [Doc(…)] }}`)")
