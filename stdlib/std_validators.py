"""Implementations of std/validators (declared, and documented, in validators.fmflow beside this file).

A validator answers a question about a text with true or false; it raises
only when it is used wrongly (a pattern that does not compile, a schema that
is not a JSON schema, a language code it does not know), so in a prompt's
`check:` a bad reply leads to its `on_fail`, and a mistake in the flow to an
error that names it.
"""

from __future__ import annotations

import ast
import functools
import json
import re

from fmflow.resources import stdlib_module

MAX_PATTERN = 10_000      # characters of a regular expression
REGEX_TIMEOUT = 1.0       # seconds one match may take

_pii = stdlib_module("std_pii")
_safety = stdlib_module("std_safety")
_language = stdlib_module("std_language")


# ------------------------------------------------------------------------------ regex
@functools.lru_cache(maxsize=256)
def _compiled(pattern: str):
    import regex  # the `regex` module: the syntax of `re`, and a timeout

    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"matches: the pattern is {len(pattern)} characters long; at most {MAX_PATTERN}")
    try:
        return regex.compile(pattern, regex.VERSION0)
    except regex.error as error:
        where = f" at position {error.pos}" if getattr(error, "pos", None) is not None else ""
        raise ValueError(f"matches: the pattern {pattern!r} does not compile: {error.msg}{where}") from None


def matches(text: str, regex: str) -> bool:
    pattern = regex
    try:
        return _compiled(pattern).search(text, timeout=REGEX_TIMEOUT) is not None
    except TimeoutError:
        raise ValueError(f"matches: the pattern {pattern!r} ran for more than {REGEX_TIMEOUT:g}s on a text of "
                         f"{len(text)} characters and was stopped (it backtracks too much: make its repetitions "
                         f"unambiguous, e.g. (a+)+ → a+)") from None


# ------------------------------------------------------------------------------- json
def valid_json(text: str, schema) -> bool:
    try:
        value = json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return False
    if schema is None:
        return True
    validator = _validator(json.dumps(schema, sort_keys=True))
    try:
        return validator.is_valid(value)
    except RecursionError:
        return False


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


@functools.lru_cache(maxsize=64)
def _validator(schema_text: str):
    import jsonschema

    schema = json.loads(schema_text)
    if not isinstance(schema, (dict, bool)):
        raise ValueError(f"valid_json: a JSON schema is an object (or true/false), got {type(schema).__name__}")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise ValueError(f"valid_json: the schema is not a valid JSON schema (at {where}): {error.message}") \
            from None
    # No remote $ref is ever fetched: the `referencing` registry behind jsonschema retrieves nothing by default.
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


# ------------------------------------------------------------------------------ words
# A word is a run of letters, digits, apostrophes or joining marks; each Han, kana or
# Hangul character counts as one word, as those scripts put no spaces between words.
_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]|[^\W\u3040-\u30ff\u3400-\u9fff"
                   r"\uac00-\ud7af\uf900-\ufaff](?:[\w'’\-.]*[^\W_])?")


def word_count(text: str) -> int:
    return sum(1 for _ in _WORD.finditer(text))


def max_words(text: str, n: int) -> bool:
    if n < 0:
        raise ValueError(f"max_words: n must be >= 0, got {n}")
    for count, _ in enumerate(_WORD.finditer(text), start=1):
        if count > n:
            return False
    return True


# --------------------------------------------------------------------------- language
def detect_language(text: str) -> str:
    return _language.detect(text) or ""


def language_is(text: str, code: str) -> bool:
    code = code.strip().lower()
    known = _language.languages()
    if code not in known:
        raise ValueError(f"language_is: unknown language code {code!r}; known: {', '.join(known)}")
    return _language.detect(text) == code


# -------------------------------------------------------------------------- citations
# [1] · [2, 3] · [1-3] · [d1] · [doc-7; kb:12]; not a Markdown link text ([text](url)).
_CITATION = re.compile(r"\[([^\[\]\n]{1,200})\](?!\()")
_RANGE = re.compile(r"(\d+)\s*[-–]\s*(\d+)")


def citations(text: str) -> list[str]:
    """The references cited in ``text``, in order of first appearance."""
    found: list[str] = []
    for m in _CITATION.finditer(text):
        for ref in _references(m.group(1)):
            if ref not in found:
                found.append(ref)
    return found


def cites_only(text: str, docs: list) -> bool:
    ids = {str(d["id"] if isinstance(d, dict) else d.id) for d in docs}
    for ref in citations(text):
        if ref in ids or (ref.isdigit() and 1 <= int(ref) <= len(docs)):
            continue
        return False
    return True


def _references(inside: str) -> list[str]:
    """The references in one pair of brackets; none when they hold prose, not references."""
    parts = [p.strip() for p in re.split(r"[,;]", inside)]
    refs: list[str] = []
    for part in parts:
        span = _RANGE.fullmatch(part)
        if span and int(span.group(1)) <= int(span.group(2)) and int(span.group(2)) - int(span.group(1)) < 1000:
            refs.extend(str(n) for n in range(int(span.group(1)), int(span.group(2)) + 1))
        elif re.fullmatch(r"[\w.:/#-]*\d[\w.:/#-]*", part):
            refs.append(part)
        else:
            return []  # "[EMAIL]", "[sic]", "[see above]": not citations
    return refs


# ----------------------------------------------------------------------------- others
def no_pii(text: str) -> bool:
    return not _pii.find_pii(text)


def is_safe(text: str) -> bool:
    return not _safety.unsafe_sentences(text)


_SINGLE_FENCE = re.compile(r"\A\s*```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)\n?```\s*\Z", re.DOTALL | re.IGNORECASE)


def valid_python(text: str) -> bool:
    fenced = _SINGLE_FENCE.match(text)
    source = fenced.group(1) if fenced else text
    try:
        ast.parse(source, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return True
