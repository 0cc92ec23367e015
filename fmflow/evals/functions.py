"""Built-in functions that only metrics of an `eval` may call.

Each has a signature for the checker (as in fmflow.builtins) and an
implementation; ``similarity`` embeds with the packaged MiniLM
(``builtin:minilm`` of fmflow.retrieval.embeddings), loaded on first use.
"""

from __future__ import annotations

import math
from typing import Any

from ..builtins import Builtin
from ..types import BOOL, FLOAT, STR, Type, is_assignable, is_dynamic


def _two_texts(name: str, result: Type):
    def rule(args: list[Type]) -> Type | str:
        if all(is_assignable(a, STR) for a in args):
            return result
        return f"{name}() compares two str values, got {', '.join(map(str, args))}"
    return rule


def _json_valid_typing(args: list[Type]) -> Type | str:
    return BOOL if is_assignable(args[0], STR) or is_dynamic(args[0]) else \
        f"json_valid() reads a str, got {args[0]}"


def normalised(text: str) -> str:
    """Text compared by ``exact`` and ``contains``: case-folded, runs of whitespace as one space."""
    return " ".join(str(text).split()).casefold()


def exact(a: str, b: str) -> bool:
    return normalised(a) == normalised(b)


def contains(text: str, part: str) -> bool:
    return normalised(part) in normalised(text)


def json_valid(text: Any) -> bool:
    import json  # here, not at the top: `fmflow check` imports this module

    if not isinstance(text, str):
        return text is None or isinstance(text, (dict, list, int, float, bool))
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def cosine(u: list[float], v: list[float]) -> float:
    """The cosine of two vectors (the embedder's are unit length; divided anyway, clamped to [-1, 1])."""
    dot = sum(x * y for x, y in zip(u, v))
    norm = math.sqrt(sum(x * x for x in u)) * math.sqrt(sum(y * y for y in v))
    return 0.0 if norm == 0 else max(-1.0, min(1.0, dot / norm))


def _similarity_placeholder(a: str, b: str) -> float:  # replaced by the runner's cached embedder
    raise RuntimeError("similarity() runs inside fmflow eval only")


METRIC_FUNCTIONS: dict[str, Builtin] = {
    b.name: b
    for b in [
        Builtin("similarity", "similarity(a: str, b: str) -> float", 2, 2, _two_texts("similarity", FLOAT),
                _similarity_placeholder, "Cosine similarity of two texts' MiniLM embeddings, from -1 to 1."),
        Builtin("exact", "exact(a: str, b: str) -> bool", 2, 2, _two_texts("exact", BOOL), exact,
                "The texts are equal, ignoring case and runs of whitespace."),
        Builtin("contains", "contains(text: str, part: str) -> bool", 2, 2, _two_texts("contains", BOOL),
                contains, "`part` occurs in `text`, ignoring case and runs of whitespace."),
        Builtin("json_valid", "json_valid(text: str) -> bool", 1, 1, _json_valid_typing, json_valid,
                "The text parses as JSON."),
    ]
}
