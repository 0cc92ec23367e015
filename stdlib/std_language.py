"""A small offline language detector, behind std/validators' language_is and detect_language.

First the script: Hangul is Korean, kana Japanese, Han without kana Chinese,
and Greek, Arabic, Hebrew and Devanagari (Hindi) stand for one language each
here. Text in Latin or Cyrillic letters is scored against character-trigram
profiles of the languages written in that script: a naive Bayes sum of the
log-probabilities of the text's trigrams (words padded with a space on each
side), add-half smoothing. The profiles are built, on first use, from the
sample texts in ``languages/CODE.txt`` beside this file (everyday prose, a few
paragraphs per language).

Codes are ISO 639-1. Short texts are guesses: a sentence of ten words or more
is usually right; two or three words may not be.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "languages"
MAX_CHARS = 4000  # a longer text is judged by its first characters

_SCRIPT_LANGUAGE = {"HANGUL": "ko", "GREEK": "el", "ARABIC": "ar", "HEBREW": "he", "DEVANAGARI": "hi"}
_NOT_LETTERS = re.compile(r"[\W\d_]+")

_lock = threading.Lock()
_profiles: dict[str, "Profile"] | None = None


class Profile:
    """Log-probabilities of one language's trigrams."""

    def __init__(self, code: str, text: str) -> None:
        self.code = code
        self.script = _main_script(text)
        counts = Counter(_trigrams(text))
        total = sum(counts.values())
        vocabulary = len(counts) + 1
        self.unseen = math.log(0.5 / (total + 0.5 * vocabulary))
        self.logp = {gram: math.log((n + 0.5) / (total + 0.5 * vocabulary)) for gram, n in counts.items()}

    def score(self, grams: list[str]) -> float:
        logp, unseen = self.logp, self.unseen
        return sum(logp.get(gram, unseen) for gram in grams)


def languages() -> list[str]:
    """The codes the detector knows."""
    return sorted(_load())


def detect(text: str) -> str | None:
    """The ISO 639-1 code of the text's language, or None when it holds no letters."""
    text = text[:MAX_CHARS]
    scripts = _script_counts(text)
    if not scripts:
        return None
    if scripts.get("HIRAGANA", 0) + scripts.get("KATAKANA", 0) > 0:
        return "ja"
    script = max(scripts, key=scripts.get)
    if script == "CJK":
        return "zh"
    if script in _SCRIPT_LANGUAGE:
        return _SCRIPT_LANGUAGE[script]
    candidates = [p for p in _load().values() if p.script == script]
    if not candidates:
        return None
    grams = _trigrams(text)
    return max(candidates, key=lambda p: p.score(grams)).code


def _load() -> dict[str, Profile]:
    global _profiles
    with _lock:
        if _profiles is None:
            found = {}
            for path in sorted(SAMPLES.glob("*.txt")):
                found[path.stem] = Profile(path.stem, path.read_text(encoding="utf-8"))
            _profiles = found
        return _profiles


def _trigrams(text: str) -> list[str]:
    grams = []
    for word in _NOT_LETTERS.split(text.lower()):
        if word:
            padded = f" {word} "
            grams.extend(padded[i:i + 3] for i in range(len(padded) - 2))
    return grams


def _script_counts(text: str) -> dict[str, int]:
    counts: Counter = Counter()
    for ch in text:
        if ch.isalpha():
            counts[_script(ch)] += 1
    return dict(counts)


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    if name.startswith("CJK") or "IDEOGRAPH" in name:
        return "CJK"
    return name.split(" ", 1)[0] if name else "OTHER"


def _main_script(text: str) -> str:
    counts = _script_counts(text)
    return max(counts, key=counts.get) if counts else "OTHER"
