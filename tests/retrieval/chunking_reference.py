"""The chunking rules written the plain way, over the whole text at once: an oracle for the streaming chunker.

Quadratic on a long text without sentence ends and holding every word in
memory, so only for tests on small texts.
"""

from __future__ import annotations

import re

from fmflow.paragraphs import hard_breaks

PARAGRAPH, LINE, SENTENCE, WORD, INSIDE_WORD = 4, 3, 2, 1, 0

_WORD = re.compile(r"\S+")
# Sentence terminators of scripts written without spaces end a sentence inside a \S+ run.
_CJK_END = re.compile(r"(?<=[。！？])(?=\S)")
_SENTENCE_END = re.compile(r"""(?:[.!?…。！？]|\.\.\.)["'”’»)\]]*$""")


def reference_split(text: str, chunk_size: int = 1000, chunk_overlap: int = 150) -> list[str]:
    """The chunks of `text`: each non-empty, at most `chunk_size` characters."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if chunk_overlap < 0 or chunk_overlap >= chunk_size:
        raise ValueError(f"chunk_overlap must be at least 0 and below chunk_size ({chunk_size}), got {chunk_overlap}")
    words, seps, strength = _atoms(text, chunk_size)
    if not words:
        return []
    # Offsets in the normalised text: word i spans start[i]:end[i].
    start: list[int] = []
    end: list[int] = []
    offset = 0
    for word, sep in zip(words, seps):
        offset += len(sep)
        start.append(offset)
        offset += len(word)
        end.append(offset)
    joined = "".join(sep + word for sep, word in zip(seps, words))
    n = len(words)

    def size(a: int, b: int) -> int:  # characters of words a..b-1 with the separators between them
        return end[b - 1] - start[a]

    chunks: list[str] = []
    first, last_cut = 0, 0
    while True:
        limit = first + 1  # the largest b with words first..b-1 fitting
        while limit < n and size(first, limit + 1) <= chunk_size:
            limit += 1
        if limit == n:
            chunks.append(joined[start[first]:end[n - 1]])
            return chunks
        cut = _best_cut(range(max(first, last_cut) + 1, limit + 1), strength,
                        lambda b: size(first, b), chunk_size)
        chunks.append(joined[start[first]:end[cut - 1]])
        first = _overlap_start(first, cut, strength, size, chunk_overlap)
        # The overlap must leave room for new text: the whole next sentence when it fits in a
        # chunk by itself, at least the next word otherwise. It shrinks a word at a time.
        sentence_end = next((b for b in range(cut + 1, n) if strength[b] >= SENTENCE), n)
        room = sentence_end if size(cut, sentence_end) <= chunk_size else cut + 1
        while first < cut and size(first, room) > chunk_size:
            first += 1
            while first < cut and strength[first] < WORD:
                first += 1
        last_cut = cut


def _atoms(text: str, chunk_size: int) -> tuple[list[str], list[str], list[int]]:
    """Words, the separator before each (normalised) and the strength of that boundary."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    hard = hard_breaks(text.split("\n"))  # a newline inside a paragraph only wraps it
    words: list[str] = []
    seps: list[str] = []
    strength: list[int] = []
    previous_end = line = 0
    for match in _WORD.finditer(text):
        gap = text[previous_end:match.start()]
        previous_end = match.end()
        newlines = gap.count("\n")
        ends_line, line = line, line + newlines
        if not words:
            sep, kind = "", PARAGRAPH
        elif newlines >= 2:
            sep, kind = "\n\n", PARAGRAPH
        elif newlines == 1 and hard[ends_line]:
            sep, kind = "\n", LINE
        elif newlines == 1:
            sep, kind = "\n", SENTENCE if _SENTENCE_END.search(words[-1]) else WORD
        elif _SENTENCE_END.search(words[-1]):
            sep, kind = " ", SENTENCE
        else:
            sep, kind = " ", WORD
        for i, piece in enumerate(_CJK_END.split(match.group())):
            for j in range(0, len(piece), chunk_size):  # only a word longer than a chunk is cut
                words.append(piece[j:j + chunk_size])
                if i == 0 and j == 0:
                    seps.append(sep)
                    strength.append(kind)
                else:
                    seps.append("")
                    strength.append(SENTENCE if j == 0 else INSIDE_WORD)
    return words, seps, strength


def _best_cut(candidates: range, strength: list[int], length, chunk_size: int) -> int:
    """The end (exclusive word index) of a chunk: the strongest boundary, latest of its strength.

    Boundaries that would leave the chunk under a quarter of `chunk_size` are
    used only when there is nothing else, so a short heading stays with the
    text that follows it rather than becoming a chunk of its own.
    """
    floor = chunk_size // 4
    full = [b for b in candidates if b == candidates[-1] or length(b) >= floor]
    pool = full or list(candidates)
    # Cutting after the last fitting word means the boundary before the next word, strength[b].
    return max(pool, key=lambda b: (strength[b], b))


def _overlap_start(first: int, cut: int, strength: list[int], size, overlap: int) -> int:
    """Where the next chunk starts: whole trailing sentences of the last chunk, else whole words."""
    if overlap <= 0:
        return cut
    fits = [b for b in range(first + 1, cut) if size(b, cut) <= overlap]
    sentences = [b for b in fits if strength[b] >= SENTENCE]
    if sentences:
        return sentences[0]
    words = [b for b in fits if strength[b] >= WORD]
    return words[0] if words else cut
