"""Splitting document text into overlapping chunks for the store (LANGUAGE.md §7).

A pure function: no imports beyond the standard library (and fmflow.paragraphs), no state.

The text is read as a sequence of words separated by boundaries of four
strengths: paragraph (a blank line), line break, sentence end, plain space.
A newline that only wraps a paragraph is not a line break: it counts as the
space it stands for (or the sentence end before it); list items, headings,
table rows and code keep their line breaks (see fmflow.paragraphs).
Each chunk holds at most `chunk_size` characters and ends at the strongest
boundary available in its last three quarters (the latest one of that
strength), so a chunk ends on a paragraph break when it can, else on a line
break or a sentence end, else between two words. Words are never cut, except
a single word longer than `chunk_size`, which is split into pieces of
`chunk_size` characters (a chunk must fit the embedding model).

The next chunk starts with up to `chunk_overlap` characters from the end of the
previous one: whole sentences when at least one fits, otherwise whole words.
"""

from __future__ import annotations

import re
from typing import Iterator

from ..paragraphs import LineBreaks

PARAGRAPH, LINE, SENTENCE, WORD, INSIDE_WORD = 4, 3, 2, 1, 0

_WORD = re.compile(r"\S+")
# Sentence terminators of scripts written without spaces end a sentence inside a \S+ run.
_CJK_END = re.compile(r"(?<=[。！？])(?=\S)")
_TERMINATORS = tuple(".!?…。！？")
_CLOSERS = "\"'”’»)]"
_FORGET_AT_LEAST = 64  # atoms: the window is trimmed when it can lose this many and at least half of it


def split_text(text: str, chunk_size: int = 1000, chunk_overlap: int = 150) -> list[str]:
    """The chunks of `text`: each non-empty, at most `chunk_size` characters."""
    return list(iter_chunks(text, chunk_size, chunk_overlap))


def iter_chunks(text: str, chunk_size: int = 1000, chunk_overlap: int = 150) -> Iterator[str]:
    """The chunks of `text`, one at a time, looking at most about two chunks ahead.

    Time is linear in the length of the text and memory bounded by the chunk
    size (plus the text itself), whatever its shape: a 50 MB paragraph without
    a sentence end, or a single 50 MB word.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if chunk_overlap < 0 or chunk_overlap >= chunk_size:
        raise ValueError(f"chunk_overlap must be at least 0 and below chunk_size ({chunk_size}), got {chunk_overlap}")
    atoms = _Window(_atoms(text, chunk_size))
    if not atoms.has(0):
        return
    first, last_cut = 0, 0
    while True:
        limit = first + 1  # the largest b with atoms first..b-1 fitting
        while atoms.has(limit) and atoms.size(first, limit + 1) <= chunk_size:
            limit += 1
        if not atoms.has(limit):
            yield atoms.text(first, limit)
            return
        cut = _best_cut(range(max(first, last_cut) + 1, limit + 1), atoms, first, chunk_size)
        yield atoms.text(first, cut)
        first = _overlap_start(first, cut, atoms, chunk_overlap)
        # The overlap must leave room for new text: the whole next sentence when it fits in a
        # chunk by itself, at least the next word otherwise. It shrinks a word at a time.
        room = _room(cut, atoms, chunk_size)
        while first < cut and atoms.size(first, room) > chunk_size:
            first += 1
            while first < cut and atoms.strength[first - atoms.base] < WORD:
                first += 1
        last_cut = cut
        atoms.forget_before(first)


def _room(cut: int, atoms: "_Window", chunk_size: int) -> int:
    """The end of the sentence after `cut` when that sentence fits a chunk by itself, else cut + 1.

    Looks no further than a chunk ahead: past that, the sentence cannot fit.
    """
    b = cut + 1
    while atoms.has(b) and atoms.strength[b - atoms.base] < SENTENCE:
        if atoms.size(cut, b + 1) > chunk_size:
            return cut + 1
        b += 1
    return b if atoms.size(cut, b) <= chunk_size else cut + 1


class _Window:
    """The atoms (words) of a text from `base` on, pulled from a stream as they are needed.

    Atom i (absolute) is at list index i - base: its text, the normalised
    separator before it, the strength of that boundary, and its start and end
    offsets in the normalised text.
    """

    def __init__(self, stream: Iterator[tuple[str, str, int]]) -> None:
        self.stream = stream
        self.base = 0
        self.words: list[str] = []
        self.seps: list[str] = []
        self.strength: list[int] = []
        self.start: list[int] = []
        self.end: list[int] = []
        self.offset = 0
        self.done = False

    def has(self, i: int) -> bool:
        while i - self.base >= len(self.words) and not self.done:
            self._pull()
        return i - self.base < len(self.words)

    def _pull(self, count: int = 256) -> None:
        for word, sep, kind in self.stream:
            self.offset += len(sep)
            self.start.append(self.offset)
            self.offset += len(word)
            self.end.append(self.offset)
            self.words.append(word)
            self.seps.append(sep)
            self.strength.append(kind)
            count -= 1
            if not count:
                return
        self.done = True

    def size(self, a: int, b: int) -> int:
        """Characters of atoms a..b-1 with the separators between them."""
        return self.end[b - 1 - self.base] - self.start[a - self.base]

    def text(self, a: int, b: int) -> str:
        lo, hi = a - self.base, b - self.base
        return self.words[lo] + "".join(sep + word for sep, word in zip(self.seps[lo + 1:hi], self.words[lo + 1:hi]))

    def forget_before(self, i: int) -> None:
        drop = i - self.base
        if drop >= _FORGET_AT_LEAST and 2 * drop >= len(self.words):  # amortised: each atom is moved O(1) times
            for column in (self.words, self.seps, self.strength, self.start, self.end):
                del column[:drop]
            self.base = i


def _atoms(text: str, chunk_size: int) -> Iterator[tuple[str, str, int]]:
    """(word, the normalised separator before it, the strength of that boundary), lazily.

    Separators are normalised as if CRLF and CR were LF: a blank line is a
    paragraph break, one hard line break (fmflow.paragraphs) a line break,
    a newline that only wraps a paragraph and other white space a space.
    """
    previous_end = 0
    previous: str | None = None
    breaks = LineBreaks(text)  # a newline inside a paragraph only wraps it
    for match in _WORD.finditer(text):
        a, b = match.span()
        if previous is None:
            sep, kind = "", PARAGRAPH
        else:
            if a - previous_end == 1:  # the usual gap: one character
                newlines = 1 if text[previous_end] in "\n\r" else 0
            else:  # counted in place: a gap may be megabytes of blank
                newlines = text.count("\n", previous_end, a) + text.count("\r", previous_end, a) \
                    - text.count("\r\n", previous_end, a)
            if newlines >= 2:
                sep, kind = "\n\n", PARAGRAPH
            elif newlines == 1 and breaks.hard_at(text.find("\n", previous_end, a)):
                sep, kind = "\n", LINE
            elif newlines == 1:
                sep, kind = "\n", SENTENCE if _ends_sentence(previous) else WORD
            elif _ends_sentence(previous):
                sep, kind = " ", SENTENCE
            else:
                sep, kind = " ", WORD
        previous_end = b
        if b - a <= chunk_size and not _CJK_END.search(text, a, b):  # the usual word: one atom
            previous = text[a:b]
            yield previous, sep, kind
            continue
        for i, (p, q) in enumerate(_pieces(text, a, b)):
            for j in range(p, q, chunk_size):  # only a word longer than a chunk is cut
                previous = text[j:min(j + chunk_size, q)]
                if i == 0 and j == p:
                    yield previous, sep, kind
                else:
                    yield previous, "", SENTENCE if j == p else INSIDE_WORD


def _pieces(text: str, a: int, b: int) -> Iterator[tuple[int, int]]:
    """The word text[a:b] split after CJK sentence ends, as (start, end) offsets."""
    start = a
    for match in _CJK_END.finditer(text, a, b):
        yield start, match.start()
        start = match.start()
    yield start, b


def _ends_sentence(word: str) -> bool:
    """A terminator (. ! ? … 。 ！ ？), maybe followed by closing quotes or brackets."""
    return word.rstrip(_CLOSERS).endswith(_TERMINATORS)


def _best_cut(candidates: range, atoms: _Window, first: int, chunk_size: int) -> int:
    """The end (exclusive atom index) of a chunk: the strongest boundary, latest of its strength.

    Boundaries that would leave the chunk under a quarter of `chunk_size` are
    used only when there is nothing else, so a short heading stays with the
    text that follows it rather than becoming a chunk of its own.
    """
    floor = chunk_size // 4
    full = [b for b in candidates if b == candidates[-1] or atoms.size(first, b) >= floor]
    pool = full or list(candidates)
    # Cutting after the last fitting word means the boundary before the next word, strength[b].
    return max(pool, key=lambda b: (atoms.strength[b - atoms.base], b))


def _overlap_start(first: int, cut: int, atoms: _Window, overlap: int) -> int:
    """Where the next chunk starts: whole trailing sentences of the last chunk, else whole words."""
    if overlap <= 0:
        return cut
    fits = [b for b in range(first + 1, cut) if atoms.size(b, cut) <= overlap]
    sentences = [b for b in fits if atoms.strength[b - atoms.base] >= SENTENCE]
    if sentences:
        return sentences[0]
    words = [b for b in fits if atoms.strength[b - atoms.base] >= WORD]
    return words[0] if words else cut
