"""Chunking for `fmflow index` (fmflow/retrieval/chunking.py): a table of cases plus invariants."""

from __future__ import annotations

import random
import re
import tracemalloc

import pytest

from chunking_reference import reference_split
from fmflow.retrieval.chunking import iter_chunks, split_text

SENTENCES = "One two three. Four five six. Seven eight nine."

CASES = [
    # (id, text, chunk_size, chunk_overlap, chunks)
    ("empty", "", 10, 0, []),
    ("blank", "  \n\n \t ", 10, 0, []),
    ("fits whole", "short text", 100, 10, ["short text"]),
    ("sentence boundary", SENTENCES, 30, 0, ["One two three. Four five six.", "Seven eight nine."]),
    ("overlap: whole sentence", "First sentence is here. Second sentence is here. Third sentence is here. Fourth one.",
     50, 25, ["First sentence is here. Second sentence is here.",
              "Second sentence is here. Third sentence is here.",
              "Third sentence is here. Fourth one."]),
    # The last sentence (15) is over the overlap (10): whole words instead, as many as leave
    # room for the next sentence.
    ("overlap: whole words", "Hello world. This is a test. Another sentence here!", 30, 10,
     ["Hello world. This is a test.", "a test. Another sentence here!"]),
    ("overlap: words without sentences", "alpha beta gamma delta epsilon zeta eta theta", 20, 8,
     ["alpha beta gamma", "gamma delta epsilon", "zeta eta theta"]),
    # Overlap and the next sentence do not fit together: the overlap shrinks a word at a time.
    ("overlap shrinks for the next sentence", SENTENCES, 30, 15,
     ["One two three. Four five six.", "five six. Seven eight nine."]),
    ("paragraph boundary first", "First paragraph here.\n\nSecond paragraph is here.\n\nThird one.", 50, 0,
     ["First paragraph here.\n\nSecond paragraph is here.", "Third one."]),
    ("paragraph beats a later sentence end", "Alpha one. Alpha two.\n\nBeta one. Beta two. Beta three.", 40, 0,
     ["Alpha one. Alpha two.", "Beta one. Beta two. Beta three."]),
    # A newline inside a paragraph only wraps it: the chunk ends at the sentence end, not at the wrap.
    ("wrapped paragraph", "Give it a policy. The reask asks again with the same\nmessages and the reason. Use default.",
     80, 0, ["Give it a policy. The reask asks again with the same\nmessages and the reason.", "Use default."]),
    ("list items keep their lines", "Steps to take:\n- first item here\n- second item here\n- third one", 40, 0,
     ["Steps to take:\n- first item here", "- second item here\n- third one"]),
    ("line breaks", "line one\nline two\nline three\nline four", 20, 0,
     ["line one\nline two", "line three\nline four"]),
    ("words when no sentence fits", "alpha beta gamma delta epsilon zeta eta theta", 20, 0,
     ["alpha beta gamma", "delta epsilon zeta", "eta theta"]),
    # A heading shorter than a quarter of a chunk stays with the text after it.
    ("heading kept with its text", "# Title\n\n" + "Sentence number one is here. " * 3, 70, 0,
     ["# Title\n\nSentence number one is here. Sentence number one is here.",
      "Sentence number one is here."]),
    # Only a word longer than a chunk is ever cut, into pieces of chunk_size.
    ("long word", "see " + "x" * 25 + " end", 10, 2, ["see", "x" * 10, "x" * 10, "xxxxx end"]),
    ("unicode letters", "Ünïcödé wörds ärë fïne. Ça va? Très bien!", 25, 0,
     ["Ünïcödé wörds ärë fïne.", "Ça va? Très bien!"]),
    ("CJK sentence ends without spaces", "これは文です。これも文です。最後の文です。", 8, 0,
     ["これは文です。", "これも文です。", "最後の文です。"]),
    ("emoji count as characters", "🙂🙂🙂 🙂🙂🙂 🙂🙂🙂", 7, 0, ["🙂🙂🙂 🙂🙂🙂", "🙂🙂🙂"]),
    ("CRLF and spaces normalised", "Windows\r\nline   endings\r\n\r\n\r\nwork.", 100, 0,
     ["Windows\nline endings\n\nwork."]),
]


@pytest.mark.parametrize("text, size, overlap, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_chunking_table(text, size, overlap, expected):
    assert split_text(text, size, overlap) == expected


def test_defaults_are_1000_and_150():
    text = " ".join(f"Sentence {i} has a few words in it." for i in range(200))
    chunks = split_text(text)
    assert all(len(c) <= 1000 for c in chunks)
    assert min(len(c) for c in chunks[:-1]) > 750
    for before, after in zip(chunks, chunks[1:]):  # each starts with whole sentences of the last one
        assert after.startswith("Sentence ")
        assert 0 < _common_overlap(before, after) <= 150


@pytest.mark.parametrize("size, overlap", [(0, 0), (-5, 0), (10, 10), (10, 11), (10, -1)])
def test_bad_sizes_are_refused(size, overlap):
    with pytest.raises(ValueError):
        split_text("some text", size, overlap)


def test_invariants_on_random_text():
    vocabulary = ["alpha", "beta.", "gamma!", "δέλτα", "x" * 30, "\n", "\n\n", "end.", "文です。", "🙂"]
    for seed in range(500):
        rng = random.Random(seed)
        text = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 60)))
        size = rng.randint(5, 120)
        overlap = rng.randint(0, size - 1)
        chunks = split_text(text, size, overlap)
        assert all(0 < len(c) <= size for c in chunks), (seed, chunks)
        assert all(c == c.strip() for c in chunks)
        words = [w for w in re.findall(r"\S+", text)]
        joined = " ".join(chunks)
        for word in words:  # nothing lost; words are whole unless longer than a chunk
            if len(word) <= size:
                assert word in joined, (seed, word)
        if not words:
            assert chunks == []


@pytest.mark.parametrize("seed", range(40))
def test_the_streaming_chunker_follows_the_plain_rules(seed):
    """Long random texts (many chunks, so many windows) give exactly what the whole-text oracle gives."""
    rng = random.Random(seed)
    vocabulary = ["alpha", "beta.", "gamma!", "δέλτα", "x" * rng.randint(5, 90), "\n", "\n\n", "end.)", "文です。",
                  "🙂", "word", "word", "word", "\r\n", "...", "a…"]
    text = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(300, 1500)))
    size = rng.choice([8, 20, 50, 100, 300])
    overlap = rng.randint(0, size - 1)
    assert list(iter_chunks(text, size, overlap)) == reference_split(text, size, overlap)


@pytest.mark.parametrize("shape", ["prose", "no sentence ends", "one word"])
def test_memory_stays_bounded_on_a_huge_text(shape):
    """A 1 MB text in one paragraph: the chunker holds a window of words, not every word of the text."""
    words = ["alpha", "beta", "gamma", "delta", "retry", "model"]
    if shape == "prose":
        text = " ".join(f"{words[i % 6]} {words[(i * 7) % 6]} {words[(i * 5) % 6]}." for i in range(50_000))
    elif shape == "no sentence ends":
        text = " ".join(words[(i * 7) % 6] for i in range(175_000))
    else:
        text = "x" * 1_000_000
    tracemalloc.start()
    try:
        count = total = 0
        for chunk in iter_chunks(text, 1000, 150):
            count += 1
            total += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count > 700 and total >= len(text.replace("  ", " ")) - 10
    assert peak < 2_000_000, f"{peak:,} bytes at the peak for a {len(text):,}-character text"


def _common_overlap(before: str, after: str) -> int:
    for n in range(min(len(before), len(after)), 0, -1):
        if before.endswith(after[:n]):
            return n
    return 0
