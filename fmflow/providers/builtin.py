"""`provider: "builtin"`: models that run inside fmflow, with no download and no server.

``name: "extractive"`` answers a ``-> str`` prompt with the sentences of the
rendered prompt that are most relevant to its question:

- The question is the last sentence ending in ``?`` of the last user
  message, else that message's last non-empty line. A leading label such as
  ``Question:`` is ignored for ranking.
- The candidates are the other sentences of all the messages (system
  included): the text is split at hard line breaks (a newline inside a
  paragraph only wraps it: see fmflow.paragraphs) and after ``.``, ``!`` or
  ``?`` followed by a space, and list markers (``-``, ``*``, ``1.``) that
  start a line are dropped. Sentences with fewer than 3 words, repeats and the
  question itself are dropped.
- Ranking is lexical, BM25 (k1 = 1.2, b = 0.75) over lowercase word tokens
  with English stop words removed and a light suffix folding of plurals and
  verb forms ("retries" ~ "retry", "issued" ~ "issues"); each candidate sentence is a
  document and the question is the query. (A later version switches to the
  offline MiniLM embedding; ``rank_sentences`` is the one place to change.)
- The answer is the top ``options.sentences`` (default 2) sentences with a
  score above 0, in their original order, joined by a space. When no
  sentence shares a word with the question, the answer is the first
  candidate sentence.

It cannot produce structured output: a prompt with a typed result
(``request.json_schema`` set) is a ProviderError, not retryable. Tokens are
counted as whitespace-separated words; the cost is 0 (nothing leaves the
process). ``on_text`` receives the whole answer at once.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Callable

from ..paragraphs import logical_lines
from . import register_provider
from .base import ChatRequest, ChatResponse, ModelConfig, Provider, ProviderError

__all__ = ["BuiltinProvider", "BUILTIN_MODELS", "extract_answer", "find_question", "rank_sentences",
           "split_sentences", "tokens"]

DEFAULT_SENTENCES = 2
MIN_WORDS = 3
K1, B = 1.2, 0.75

STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just let me more most my myself no nor
not now of off on once only or other our ours ourselves out over own same she should so some such than that
the their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves
""".split())

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d{1,3}[.)]|\[\d{1,3}\])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s")  # a markdown heading names a section; it answers nothing
_LABEL = re.compile(r"^\s*[A-Za-z][\w ]{0,24}:\s+")


def _words(text: str) -> int:
    return len(text.split())


def _fold(word: str) -> str:
    """A light suffix folding so that plurals and simple verb forms meet ("issued" ~ "issues")."""
    if len(word) > 4 and word.endswith(("ies", "ied")):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """Lowercase word tokens without stop words, suffix-folded."""
    return [_fold(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split at hard line breaks and after a sentence end followed by a space.

    A newline inside a paragraph only wraps it (fmflow.paragraphs): the sentence goes on. A list marker
    that starts a line (``-``, ``*``, ``•``, ``1.``, ``1)``, a citation ``[1]``) is not part of its
    sentence, and markdown headings are left out.
    """
    out = []
    for line in logical_lines(text):
        line = _BULLET.sub("", line, count=1)
        if _HEADING.match(line):
            continue
        out.extend(s.strip() for s in _SENTENCE_END.split(line) if s.strip())
    return out


def find_question(text: str) -> str:
    """The last sentence ending in '?', else the last non-empty line ('' for empty text)."""
    asked = [s for s in split_sentences(text) if s.rstrip("\"')]").endswith("?")]
    if asked:
        return asked[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def rank_sentences(question: str, sentences: list[str]) -> list[float]:
    """BM25 score of each sentence (a document) for the question (the query)."""
    query = set(tokens(_LABEL.sub("", question, count=1)))
    docs = [tokens(s) for s in sentences]
    if not query or not docs:
        return [0.0] * len(sentences)
    n = len(docs)
    average = sum(len(d) for d in docs) / n or 1.0
    df = Counter(t for d in docs for t in set(d))
    scores = []
    for doc in docs:
        tf = Counter(doc)
        score = 0.0
        for term in query:
            if tf[term]:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf[term] * (K1 + 1) / (tf[term] + K1 * (1 - B + B * len(doc) / average))
        scores.append(score)
    return scores


def extract_answer(messages: list[dict[str, Any]], count: int = DEFAULT_SENTENCES) -> str:
    """The extractive answer to the chat ``messages`` (see the module doc)."""
    users = [m for m in messages if m.get("role") == "user"]
    question = find_question(str(users[-1].get("content") or "")) if users else ""
    q_norm = " ".join(question.split())
    seen: set[str] = set()
    candidates: list[str] = []
    for message in messages:
        for sentence in split_sentences(str(message.get("content") or "")):
            norm = " ".join(sentence.split())
            if norm == q_norm or norm in seen or len(_WORD.findall(sentence)) < MIN_WORDS:
                continue
            seen.add(norm)
            candidates.append(sentence)
    if not candidates:
        return ""
    scores = rank_sentences(question, candidates)
    best = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: (-scores[i], i))[:count]
    if not best:
        return candidates[0]
    return " ".join(candidates[i] for i in sorted(best))


def _extractive(config: ModelConfig, request: ChatRequest) -> str:
    if request.json_schema is not None:
        what = f"prompt '{request.schema_name}'" if request.schema_name else "this prompt"
        raise ProviderError(
            f"builtin:extractive cannot produce structured output, and {what} returns a typed value "
            f"(model '{config.name}'): make it a `-> str` prompt, or give it another model")
    count = {**config.options, **request.options}.get("sentences", DEFAULT_SENTENCES)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ProviderError(f"builtin model '{config.name}': options.sentences must be a whole number "
                            f"of at least 1, got {count!r}")
    return extract_answer(request.messages, count)


BUILTIN_MODELS: dict[str, Callable[[ModelConfig, ChatRequest], str]] = {
    "extractive": _extractive,
}


class BuiltinProvider(Provider):
    name = "builtin"
    supports_structured_output = False

    async def complete(self, config: ModelConfig, request: ChatRequest) -> ChatResponse:
        model = BUILTIN_MODELS.get((config.model or "").strip())
        if model is None:
            given = f"'{config.model}'" if config.model else "no `name:`"
            raise ProviderError(f"builtin model '{config.name}' has {given}; the builtin models are: "
                                f"{', '.join(sorted(BUILTIN_MODELS))}")
        text = model(config, request)
        if request.on_text is not None and text:
            request.on_text(text)
        tokens_in = sum(_words(str(m.get("content") or "")) for m in request.messages)
        return ChatResponse(text=text, tokens_in=tokens_in, tokens_out=_words(text), cost=0.0,
                            model=f"builtin:{config.model}")


register_provider("builtin", BuiltinProvider)
