"""Implementations of std/filters (declared in filters.fmflow beside this file)."""

from __future__ import annotations

import html
import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<!\w)(?:\+?\d[\d ().-]{7,}\d)(?!\w)")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){13,19}(?!\d)")
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
    """Mask e-mail addresses, card numbers and phone numbers."""
    text = _EMAIL.sub("[email]", text)
    text = _CARD.sub("[card]", text)
    return _PHONE.sub("[phone]", text)


def strip_html(text: str) -> str:
    return html.unescape(_TAG.sub(" ", text)).strip()


def squash_whitespace(text: str) -> str:
    return " ".join(text.split())


def join_docs(docs: list, separator: str) -> str:
    return separator.join(d["text"] if isinstance(d, dict) else d.text for d in docs)
