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
# Every repetition is bounded, none crosses a line, and none can run past the next delimiter of
# its own kind: no pattern rescans a long text from each of many openers.
_URL = r"[^()\[\]\n]{0,2000}"


def _emphasis(mark: str) -> re.Pattern:
    quoted, char = re.escape(mark), re.escape(mark[0])
    return re.compile(rf"(?<![\w{char}]){quoted}(?=[^\s{char}])([^{char}\n]{{1,1000}})(?<=\S){quoted}(?![\w{char}])")


_MARKDOWN_STEPS = [
    (re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$\n?", re.MULTILINE), ""),                    # rules
    (re.compile(r"^[ \t]*\|?(?:[ \t]*:?-{3,}:?[ \t]*\|)+[ \t]*(?::?-+:?)?[ \t]*$\n?", re.MULTILINE), ""),  # table
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+([^\n]*?)[ \t#]*$", re.MULTILINE), r"\1"),     # headings
    (re.compile(r"^([^\n]+)\n[ \t]*(?:=+|-+)[ \t]*$", re.MULTILINE), r"\1"),            # setext headings
    (re.compile(r"^[ \t]*(?:>[ \t]?)+", re.MULTILINE), ""),                               # quotes
    (re.compile(r"^([ \t]*)(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?", re.MULTILINE), r"\1"),  # list marks
    (re.compile(rf"!\[([^\[\]\n]{{0,1000}})\]\({_URL}\)"), r"\1"),                         # images
    (re.compile(rf"\[([^\[\]\n]{{1,1000}})\]\({_URL}\)"), r"\1"),                          # links
    (re.compile(r"\[([^\[\]\n]{1,1000})\]\[[^\[\]\n]{0,200}\]"), r"\1"),                   # reference links
    (re.compile(r"^[ \t]*\[[^\[\]\n]{1,200}\]:[ \t]*\S+[^\n]*$\n?", re.MULTILINE), ""),      # link definitions
    (re.compile(r"<((?:https?|mailto):[^<>\s]{1,2000})>"), r"\1"),                        # autolinks
    (_emphasis("**"), r"\1"), (_emphasis("__"), r"\1"), (_emphasis("*"), r"\1"), (_emphasis("_"), r"\1"),
    (_emphasis("~~"), r"\1"),
    (re.compile(r"(`{1,3})([^`\n]{1,1000})\1"), r"\2"),                                    # inline code
    (re.compile(r"^[ \t]*\|[ \t]*([^\n]*?)[ \t]*\|[ \t]*$", re.MULTILINE), r"\1"),          # table rows: outer bars
    (re.compile(r"[ \t]*(?<!\\)\|[ \t]*"), " | "),                                         # table rows: inner bars
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])"), r"\1"),                                 # escapes
]
_FENCE_LINE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})")


def strip_markdown(text: str) -> str:
    """Plain text: markup gone, the words kept (code blocks keep their content as is)."""
    out: list[str] = []
    prose: list[str] = []
    for kind, lines in _fenced_blocks(text.replace("\r\n", "\n").split("\n")):
        if kind == "code":
            if prose:
                out.append(_strip_prose("\n".join(prose)))
                prose = []
            out.append("\n".join(lines))
        else:
            prose.extend(lines)
    if prose:
        out.append(_strip_prose("\n".join(prose)))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def _fenced_blocks(lines: list[str]):
    """("prose" | "code", lines) in order; a fence left open runs to the end (as CommonMark reads it)."""
    block: list[str] = []
    fence = None
    for line in lines:
        opener = _FENCE_LINE.match(line)
        if fence is None and opener:
            if block:
                yield "prose", block
            block, fence = [], opener.group(1)
        elif fence is not None and opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence) \
                and not line.strip().lstrip(fence[0]):
            yield "code", block
            block, fence = [], None
        else:
            block.append(line)
    if block:
        yield ("code" if fence is not None else "prose"), block


def _strip_prose(text: str) -> str:
    for pattern, replacement in _MARKDOWN_STEPS:
        text = pattern.sub(replacement, text)
    return text


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
