"""std/validators: each answers true or false, and raises only when used wrongly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BIG = 10_000_000
SENTENCES = Path(__file__).with_name("language_sentences.jsonl")


def test_matches(std):
    v = std("validators")
    assert v.matches("Order ABC-123 shipped", r"[A-Z]{3}-\d+")
    assert not v.matches("Order abc-123", r"^[A-Z]{3}-\d+$")
    assert v.matches("x" * BIG + "needle", "needle$")
    with pytest.raises(ValueError, match="does not compile.*position"):
        v.matches("x", "(unclosed")
    with pytest.raises(ValueError, match="at most 10000"):
        v.matches("x", "a" * 10_001)


def test_matches_stops_catastrophic_backtracking(std):
    # (a|aa)+$ on 5,000 a's and a b: Python's re would run for longer than the universe has existed.
    with pytest.raises(ValueError, match="ran for more than 1s.*backtracks"):
        std("validators").matches("a" * 5000 + "b", r"(a|aa)+$")


def test_valid_json_with_and_without_schema(std):
    v = std("validators")
    schema = {"type": "object", "required": ["name", "age"],
              "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                             "email": {"type": "string", "format": "email"}}}
    assert v.valid_json('{"name": "Ada", "age": 36}', schema)
    assert not v.valid_json('{"name": "Ada", "age": -1}', schema)
    assert not v.valid_json('{"name": "Ada"}', schema)
    assert not v.valid_json('{"name": "Ada", "age": 3, "email": "not an email"}', schema)
    assert v.valid_json("[1, 2]", None) and v.valid_json("null", None) and v.valid_json(' "text" ', None)
    for bad in ("", "{", "{'a': 1}", '{"a": 1,}', "```json\n{}\n```", "NaN", '{"a": Infinity}', "[1] [2]",
                "[" * 100_000 + "]" * 100_000, '{"a": ' * 100_000):
        assert not v.valid_json(bad, None), bad[:40]
    assert v.valid_json(json.dumps({"text": "b" * BIG}), {"type": "object"})


def test_a_bad_schema_is_an_error_not_a_false(std):
    with pytest.raises(ValueError, match="not a valid JSON schema"):
        std("validators").valid_json("1", {"type": "nonsense"})
    with pytest.raises(ValueError, match="is an object"):
        std("validators").valid_json("1", [1, 2])


def test_a_remote_ref_is_never_fetched(std):
    schema = {"$ref": "https://example.invalid/schema.json"}
    with pytest.raises(Exception) as caught:  # unresolvable: jsonschema names the reference, nothing is fetched
        std("validators").valid_json("1", schema)
    assert "example.invalid" in str(caught.value)


def test_max_words_and_word_count(std):
    v = std("validators")
    assert v.word_count("It's a well-known fact: 3.5 million people, e.g. you.") == 9
    assert v.word_count("今天天气很好") == 6 and v.word_count("Hello 世界") == 3
    assert v.max_words("one two three", 3) and not v.max_words("one two three four", 3)
    assert v.max_words("", 0) and v.max_words("  \n ", 0)
    assert not v.max_words("word " * (BIG // 5), 100)
    with pytest.raises(ValueError, match=">= 0"):
        v.max_words("x", -1)


def test_language_is_on_real_sentences(std):
    v = std("validators")
    rows = [json.loads(line) for line in SENTENCES.read_text(encoding="utf-8").splitlines()]
    wrong = [(row["lang"], v.detect_language(row["text"]), row["text"]) for row in rows
             if not v.language_is(row["text"], row["lang"])]
    assert len({row["lang"] for row in rows}) >= 20
    assert not wrong, wrong
    assert v.detect_language("1234 !!! ...") == ""
    with pytest.raises(ValueError, match="unknown language code 'xx'; known: ar, cs"):
        v.language_is("text", "xx")


def test_citations_and_cites_only(std):
    v = std("validators")
    docs = [{"id": "d1", "text": "a", "score": 1.0, "metadata": {}}, {"id": "kb:7", "text": "b", "score": 1.0,
                                                                     "metadata": {}}]
    text = "Retries back off [1]; see also [kb:7] and [1, 2]. Redacted [EMAIL], quoted [sic], a [link](http://x)."
    assert v.citations(text) == ["1", "kb:7", "2"]
    assert v.cites_only(text, docs)
    assert not v.cites_only("As shown in [3].", docs)
    assert not v.cites_only("See [d9].", docs)
    assert v.cites_only("See [d1].", docs) and v.cites_only("No citations at all.", docs)
    assert v.citations("[1-3] and [2–4]") == ["1", "2", "3", "4"]
    assert not v.cites_only("[1-3]", docs)
    assert v.citations("[" * 100_000) == [] and v.citations("[1" * 100_000) == []


def test_no_pii_is_safe_and_valid_python(std, tmp_path):
    v = std("validators")
    assert v.no_pii("The meeting is at 10:30 on 2024-05-06.") and not v.no_pii("Mail me: a@b.io")
    assert v.is_safe("Kill the process and restart it.") and not v.is_safe("I will kill you.")
    assert v.valid_python("def f(x):\n    return x * 2\n")
    assert v.valid_python("```python\nprint('hi')\n```")
    marker = tmp_path / "ran"
    assert v.valid_python(f"open({str(marker)!r}, 'w').write('x')")
    assert not marker.exists()  # parsed, never run
    for bad in ("def f(:", "x = (1,", "\x00", "(" * 1000 + ")" * 1000, "print('unclosed", "[" * 100_000):
        assert not v.valid_python(bad), bad[:20]
