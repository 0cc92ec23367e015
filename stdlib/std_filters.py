"""Implementations of std/filters (declared, and documented, in filters.fmflow beside this file)."""

from __future__ import annotations

import html
import re
import unicodedata

from fmflow.resources import stdlib_module

_pii = stdlib_module("std_pii")
_safety = stdlib_module("std_safety")

_TAG = re.compile(r"<[^>]+>")


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary where one is near."""
    if limit < 0:
        raise ValueError(f"truncate: limit must be >= 0, got {limit}")
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space >= limit * 0.8:
        cut = cut[:space]
    return cut.rstrip()


def redact_pii(text: str) -> str:
    return _pii.redact(text)


def strip_html(text: str) -> str:
    return html.unescape(_TAG.sub(" ", text)).strip()


def squash_whitespace(text: str) -> str:
    return " ".join(text.split())


# Spaces that are not U+0020 (no-break, thin, ideographic …) and characters that take no room.
_ODD_SPACES = re.compile(r"[\t\f\v\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_INVISIBLE = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_LINE_ENDS = re.compile(r"\r\n?|[\u2028\u2029\x85]")


def normalize_ws(text: str) -> str:
    text = _INVISIBLE.sub("", _LINE_ENDS.sub("\n", text))
    text = _ODD_SPACES.sub(" ", unicodedata.normalize("NFC", text))
    lines = [re.sub(r" {2,}", " ", line).strip(" ") for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def join_docs(docs: list, separator: str) -> str:
    return separator.join(d["text"] if isinstance(d, dict) else d.text for d in docs)


# ----------------------------------------------------------------------------- markdown
_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)
_MARKDOWN_STEPS = [
    (re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$", re.MULTILINE), ""),                   # rules
    (re.compile(r"^[ \t]*\|?(?:[ \t]*:?-{3,}:?[ \t]*\|)+[ \t]*:?-*:?[ \t]*$", re.MULTILINE), ""),  # table rules
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)[ \t#]*$", re.MULTILINE), r"\1"),          # headings
    (re.compile(r"^(.+)\n[ \t]*(?:=+|-+)[ \t]*$", re.MULTILINE), r"\1"),                 # setext headings
    (re.compile(r"^[ \t]*>[ \t]?", re.MULTILINE), ""),                                   # quotes
    (re.compile(r"^([ \t]*)(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?", re.MULTILINE), r"\1"),  # list marks
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),                                      # images
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),                                       # links
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),                                      # reference links
    (re.compile(r"^[ \t]*\[[^\]]+\]:[ \t]*\S+.*$", re.MULTILINE), ""),                   # link definitions
    (re.compile(r"<((?:https?|mailto):[^>\s]+)>"), r"\1"),                               # autolinks
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),                               # bold
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),                   # *italic*
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),                           # _italic_ (not snake_case)
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),                                      # strikethrough
    (re.compile(r"(`+)(.+?)\1"), r"\2"),                                                 # inline code
    (re.compile(r"^[ \t]*\|(.*)\|[ \t]*$", re.MULTILINE), r"\1"),                        # table rows: outer bars
    (re.compile(r"[ \t]*(?<!\\)\|[ \t]*"), " | "),                                       # table rows: inner bars
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])"), r"\1"),                                # escapes
]


def strip_markdown(text: str) -> str:
    """Plain text: markup gone, the words kept (code blocks keep their content as is)."""
    blocks: list[str] = []

    def hold(match: re.Match) -> str:  # code is not markdown: set it aside untouched
        blocks.append(match.group(2).rstrip("\n"))
        return f"\x00{len(blocks) - 1}\x00"

    text = _FENCE.sub(hold, text.replace("\r\n", "\n"))
    for pattern, replacement in _MARKDOWN_STEPS:
        text = pattern.sub(replacement, text)
    text = re.sub(r"\x00(\d+)\x00", lambda m: blocks[int(m.group(1))], text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# -------------------------------------------------------------------------------- model
def truncate_tokens(text: str, n: int) -> str:
    return stdlib_module("std_minilm").truncate_tokens(text, n)


def dedupe(texts: list[str], near: float | None) -> list[str]:
    """The texts without repeats, first occurrences kept, in order."""
    if near is not None and not 0.0 < near <= 1.0:
        raise ValueError(f"dedupe: near must be a cosine similarity in (0, 1], got {near}")
    unique = list(dict.fromkeys(texts))
    if near is None or len(unique) < 2:
        return unique
    keep = stdlib_module("std_minilm").near_duplicate_mask(unique, near)
    return [text for text, kept in zip(unique, keep) if kept]


# ---------------------------------------------------------------------------- screening
def drop_unsafe(text: str) -> str:
    return _safety.scrub(text)


def drop_unsafe_items(items: list[str]) -> list[str]:
    return [item for item in items if not _safety.unsafe_sentences(item)]


def unsafe_categories(text: str) -> list[str]:
    return _safety.unsafe_categories(text)


register_classifier = _safety.register_classifier


# --------------------------------------------------------------------------------- json
def extract_json(text: str):
    """The first JSON value in ``text`` (fences, prose, trailing commas and single quotes tolerated), else null."""
    from fmflow.runtime.outputs import OutputParseError, parse_json_lenient

    try:
        return parse_json_lenient(text)
    except OutputParseError:
        return None
    except RecursionError:  # nested deeper than Python's parser goes: not a value fmflow can hold
        return None


def chunk(text: str, size: int, overlap: int) -> list[str]:
    from fmflow.retrieval.chunking import split_text

    try:
        return split_text(text, size, overlap)
    except ValueError as error:
        raise ValueError(f"chunk: {error}") from None
