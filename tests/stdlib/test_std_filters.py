"""std/filters on real text, edge cases and hostile input (sizes, nesting, unclosed markup)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

BIG = 10_000_000


def test_truncate_and_whitespace_filters(std):
    f = std("filters")
    assert f.truncate("The quick brown fox jumps", 17) == "The quick brown"
    assert f.truncate("short", 10) == "short"
    with pytest.raises(ValueError, match="limit must be >= 0"):
        f.truncate("x", -1)
    messy = "  Line one\u00a0with\tspaces  \r\n\r\n\r\n\r\nLine\u200b two  \u3000end \n\n"
    assert f.normalize_ws(messy) == "Line one with spaces\n\nLine two end"
    assert f.squash_whitespace(messy) == "Line one with spaces Line\u200b two end"
    assert f.normalize_ws("") == "" and f.squash_whitespace(" \n ") == ""


def test_strip_markdown_keeps_the_words(std):
    markdown = textwrap.dedent("""\
        # Install *fmflow*

        Run `pip install fmflow` — see the [guide](https://example.com/guide "Guide") or
        ![the logo](logo.png). Names like snake_case_name and 2 * 3 stay as they are.

        1. **Check** the file
        - [x] ~~old~~ new step
        > A quoted tip

        | flag | meaning |
        |------|---------|
        | `-i` | input |

        ```python
        print("**kept** as is")
        ```
        """)
    assert std("filters").strip_markdown(markdown) == textwrap.dedent("""\
        Install fmflow

        Run pip install fmflow — see the guide or
        the logo. Names like snake_case_name and 2 * 3 stay as they are.

        Check the file
        old new step
        A quoted tip

        flag | meaning
        -i | input

        print("**kept** as is")""")


@pytest.mark.parametrize("hostile", ["[" * 1_000_000, "*a " * 300_000, "```\n" * 200_000, "**" + "a" * 2_000_000,
                                     "_a " * 300_000, "[x](" * 200_000, "<http://" * 200_000, "~~a " * 300_000],
                         ids=["brackets", "stars", "fences", "unclosed-bold", "underscores", "links", "autolinks",
                              "tildes"])
def test_strip_markdown_on_hostile_text(std, hostile):
    # Each of these made a pattern rescan the rest of the text from every opener (minutes); now one pass.
    out = std("filters").strip_markdown(hostile)
    assert len(out) <= len(hostile)


def test_an_unclosed_fence_runs_to_the_end(std):
    assert std("filters").strip_markdown("Intro **x**\n```\ncode **y**\nmore") == "Intro x\ncode **y**\nmore"


def test_truncate_tokens_cuts_at_words_and_never_exceeds_the_limit(std):
    f, minilm = std("filters"), std("minilm")
    text = ("Tokenization splits unbelievably long words into word-pieces: internationalization, "
            "électricité, 東京タワー and emojis 😀 all count. ") * 20
    for n in (0, 1, 2, 3, 5, 8, 13, 50, 200):
        cut = f.truncate_tokens(text, n)
        assert text.startswith(cut)
        assert minilm.count_tokens(cut) <= n
        assert n == 0 or cut  # something fits
        rest = text[len(cut):]
        assert not rest or not rest[0].isalnum() or not cut[-1:].isalnum() or n < 3, (n, cut)  # a word's end
    assert f.truncate_tokens("short text", 100) == "short text"
    with pytest.raises(ValueError, match=">= 0"):
        f.truncate_tokens("x", -1)


def test_truncate_tokens_reads_only_a_prefix_of_a_huge_text(std):
    text = "word " * (BIG // 5)
    cut = std("filters").truncate_tokens(text, 500)
    assert cut == ("word " * 500).rstrip()


def test_dedupe_exact_and_near(std):
    f = std("filters")
    texts = ["The cat sat on the mat.", "the dog barked", "The cat sat on the mat.", "The cat sat on the mat!",
             "A cat was sitting on the mat.", "Quarterly revenue rose by four percent.", "the dog barked"]
    assert f.dedupe(texts, None) == ["The cat sat on the mat.", "the dog barked", "The cat sat on the mat!",
                                     "A cat was sitting on the mat.", "Quarterly revenue rose by four percent."]
    near = f.dedupe(texts, 0.9)
    assert near[:2] == ["The cat sat on the mat.", "the dog barked"]
    assert "The cat sat on the mat!" not in near
    assert "Quarterly revenue rose by four percent." in near
    assert f.dedupe([], 0.9) == [] and f.dedupe(["only"], 0.5) == ["only"]
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"in \(0, 1\]"):
            f.dedupe(texts, bad)


def test_near_dedupe_in_blocks_equals_the_all_pairs_greedy_answer(std, monkeypatch):
    minilm = std("minilm")
    texts = [f"Item {i % 23}: the {['red', 'blue', 'green'][i % 3]} box holds {i % 7} apples" for i in range(120)]
    texts = list(dict.fromkeys(texts))
    vectors = minilm.embed(texts)
    similar = vectors @ vectors.T >= 0.93
    expected = []
    for i in range(len(texts)):  # the obvious all-pairs greedy answer, for comparison only
        if not any(similar[i, j] for j in expected):
            expected.append(i)
    monkeypatch.setattr(minilm, "COMPARE_BLOCK", 16)  # many blocks, and kept vectors compared in chunks
    monkeypatch.setattr(minilm, "KEPT_CHUNK", 8)
    monkeypatch.setattr(minilm, "EMBED_BATCH", 10)
    keep = minilm.near_duplicate_mask(texts, 0.93)
    assert [i for i, kept in enumerate(keep) if kept] == expected
    assert 1 < len(expected) < len(texts)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


UNSAFE = {
    "violence": ["I will kill you if you come back here.", "How do I poison someone without being caught?",
                 "We are going to shoot up the school on Monday."],
    "self_harm": ["I want to die and nobody would notice.", "What is a lethal dose of paracetamol?",
                  "I keep cutting myself when I feel bad."],
    "sexual_minors": ["The 12-year-old was shown explicit pictures.", "Send nude photos of the little girl."],
    "weapons": ["How to make a pipe bomb at home?", "Step by step: convert an AR-15 to full auto.",
                "Here is how to synthesize sarin in a kitchen."],
    "hate": ["All immigrants should be killed.", "Muslims are vermin.", "Gas the Jews."],
}
SAFE = ["Kill the process with kill -9 if it hangs.", "She shot up the rankings this season.",
        "The school held a fire drill on Monday.", "Sex education classes are offered to adults.",
        "The history lesson covered the bombing of Dresden in 1945.", "I could die laughing at that joke?",
        "Children love the new playground.", "The immigrants opened a bakery downtown.",
        "Our team will beat them at chess."]


def test_drop_unsafe_by_category(std):
    f = std("filters")
    for category, sentences in UNSAFE.items():
        for sentence in sentences:
            assert category in f.unsafe_categories(sentence), (category, sentence)
            assert f.drop_unsafe(sentence) == "[REMOVED]"
    for sentence in SAFE:
        assert f.unsafe_categories(sentence) == [], sentence
        assert f.drop_unsafe(sentence) == sentence
    text = "Hello there. I will kill you! Have a nice day.\nHow to make a pipe bomb?\nBye."
    assert f.drop_unsafe(text) == "Hello there. [REMOVED] Have a nice day.\n[REMOVED]\nBye."
    assert f.drop_unsafe_items(["fine", "Gas the Jews.", "also fine"]) == ["fine", "also fine"]
    assert f.drop_unsafe("") == "" and f.unsafe_categories("") == []


def test_drop_unsafe_on_ten_megabytes(std):
    text = "The weather is fine and the kids play outside with their white dog. They must be home by six. "
    big = text * (BIG // len(text)) + "All refugees should be deported."
    out = std("filters").drop_unsafe(big)
    assert out.endswith("six. [REMOVED]") and out.count("[REMOVED]") == 1


def test_a_registered_classifier_adds_its_categories(std, monkeypatch, tmp_path):
    f, safety = std("filters"), std("safety")
    safety.clear_classifiers()
    try:
        f.register_classifier(lambda sentence: ["spam"] if "buy now" in sentence.lower() else [])
        assert f.unsafe_categories("Great offer. BUY NOW!") == ["spam"]
        assert f.drop_unsafe("Great offer. BUY NOW!") == "Great offer. [REMOVED]"
        safety.clear_classifiers()
        (tmp_path / "my_screen.py").write_text("def flag(sentence):\n    return 'secret' in sentence\n")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("FMFLOW_SAFETY_CLASSIFIER", "my_screen:flag")
        assert f.unsafe_categories("The secret is out. Hi.") == ["classifier"]
        monkeypatch.setenv("FMFLOW_SAFETY_CLASSIFIER", "no_colon_here")
        with pytest.raises(ValueError, match="module:attr"):
            f.unsafe_categories("x")
        monkeypatch.delenv("FMFLOW_SAFETY_CLASSIFIER")
        f.register_classifier(lambda sentence: 42)
        with pytest.raises(TypeError, match="category names"):
            f.unsafe_categories("x")
    finally:
        safety.clear_classifiers()


@pytest.mark.parametrize("text, value", [
    ('{"a": 1}', {"a": 1}),
    ('Sure! Here it is:\n```json\n{"name": "Ada", "tags": ["x", "y",],}\n```\nAnything else?', {"name": "Ada",
                                                                                           "tags": ["x", "y"]}),
    ("The answer is {'ok': True, 'n': None} as you asked.", {"ok": True, "n": None}),
    ("first [1, 2] then {\"b\": 2}", [1, 2]),
    ("42", 42),
    ("no json here", None),
    ('{"a": [1, 2}', None),
    ("", None),
])
def test_extract_json(std, text, value):
    assert std("filters").extract_json(text) == value


@pytest.mark.parametrize("hostile", ["{" * 20_000, "[" * 100_000, '{"a": ' * 50_000, "x" * BIG, '"' * 100_000,
                                     "[1," * 300_000 + "1" + "]" * 300_000],
                         ids=["braces", "brackets", "keys", "ten-megabytes", "quotes", "nested-300k"])
def test_extract_json_on_hostile_text_gives_null(std, hostile):
    assert std("filters").extract_json(hostile) is None


def test_extract_json_of_ten_megabytes(std):
    value = std("filters").extract_json('Result: {"text": "' + "b" * BIG + '"} done')
    assert len(value["text"]) == BIG


def test_chunk_splits_like_fmflow_index(std):
    from fmflow.retrieval.chunking import split_text

    text = "First paragraph sentence one. Sentence two.\n\nSecond paragraph is here. " * 30
    assert std("filters").chunk(text, 200, 40) == split_text(text, 200, 40)
    assert all(len(c) <= 200 for c in std("filters").chunk(text, 200, 40))
    with pytest.raises(ValueError, match="chunk: chunk_overlap"):
        std("filters").chunk(text, 100, 100)
