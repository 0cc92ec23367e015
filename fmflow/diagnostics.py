"""Diagnostics: stable codes, a collector, and the two renderers (text, JSON).

Passes never raise on bad input; they add a Diagnostic and carry on, and the
phase boundary decides whether errors stop the pipeline.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from enum import Enum
from typing import Iterable

from .source import SourceFile, Span


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


# The stable codes of LANGUAGE.md §6. A code's meaning never changes.
CODES: dict[str, str] = {
    "E001": "syntax error",
    "E002": "import not found, or import cycle",
    "E101": "unknown name",
    "E102": "duplicate definition",
    "E103": "wrong arguments in a call",
    "E104": "unknown field of a type, or unknown key in a block",
    "E201": "type mismatch",
    "E202": "template variable is not a parameter",
    "E203": "missing return or possibly unassigned name",
    "E204": "name assigned twice on one path",
    "E301": "recursive flow",
    "E401": "locked prompt version changed",
    "W501": "unused declaration",
}


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span
    help: str | None = None

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self.code.startswith("W") else Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple:
        return (self.span.path, self.span.start, self.code, self.message)

    def to_json(self) -> dict:
        return {
            "file": self.span.path,
            "line": self.span.line,
            "col": self.span.col,
            "end_line": self.span.end_line,
            "end_col": self.span.end_col,
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
        }


# Words other tools use where fmflow says something else (LangChain's max_iterations,
# OpenAI's max_completion_tokens, top_k…): a name is compared word by word after these.
_SYNONYMS = {
    "iterations": "steps", "iteration": "steps", "iters": "steps", "rounds": "steps", "turns": "steps",
    "retries": "retry", "attempts": "retry", "completion": "", "prompt": "template", "instructions": "system",
    "functions": "tools", "fallbacks": "fallback", "parallel": "concurrency", "workers": "concurrency",
    "top": "", "n": "", "results": "k", "threshold": "score", "filter": "where", "collection_name": "collection",
    "memory": "history", "messages": "history", "chat": "history",
}


def _words(name: str) -> tuple[str, ...]:
    """The words of a snake_case name, each through _SYNONYMS (words mapped to "" dropped)."""
    words = (_SYNONYMS.get(w, w) for w in name.lower().split("_") if w)
    return tuple(w for w in words if w)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to a misspelt name, if one is close enough (case aside).

    First a candidate with the same words once other tools' words are
    translated (`max_iterations` → `max_steps`, `top_k` → `k`); then the
    closest spelling; then the one candidate the name is the start of (`temp`).
    """
    by_lower: dict[str, str] = {}
    for candidate in sorted(set(candidates)):
        if candidate != name:
            by_lower.setdefault(candidate.lower(), candidate)
    words = _words(name)
    same_words = [c for c in by_lower if words and _words(c) == words]
    if len(same_words) == 1:
        return by_lower[same_words[0]]
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    if matches:
        return by_lower[matches[0]]
    starting = [c for c in by_lower if len(name) >= 3 and c.startswith(name.lower())]
    return by_lower[starting[0]] if len(starting) == 1 else None


def suggestion_help(name: str, candidates: Iterable[str]) -> str | None:
    best = did_you_mean(name, candidates)
    return f"did you mean '{best}'?" if best else None


def unknown_test_problems(names: Iterable[str], known: list[str], where: str, listed: str,
                          hidden: str = "") -> list[str]:
    """One sentence per name in ``names`` that no test in ``where`` has (`fmflow test --name`,
    ``run_tests(names=…)``): a did-you-mean, else ``listed`` (the tests there)."""
    return [f"no test '{name}' in {where}; {suggestion_help(name, known) or listed}{hidden}"
            for name in dict.fromkeys(names) if name not in known]


class Diagnostics:
    """Collects diagnostics from every pass; never raises."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self._seen: set[tuple] = set()

    def add(self, code: str, message: str, span: Span, help: str | None = None) -> None:
        assert code in CODES, code
        key = (code, message, span.path, span.start, span.end)
        if key in self._seen:  # two passes may reach the same fault
            return
        self._seen.add(key)
        self.items.append(Diagnostic(code, message, span, help))

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        for d in diagnostics:
            self.add(d.code, d.message, d.span, d.help)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=Diagnostic.sort_key)

    def __iter__(self):
        return iter(self.sorted())

    def __len__(self) -> int:
        return len(self.items)


# ----------------------------------------------------------------- rendering

_RED, _YELLOW, _BLUE, _BOLD, _RESET = "\033[31m", "\033[33m", "\033[34m", "\033[1m", "\033[0m"


def render_text(
    diagnostics: Iterable[Diagnostic],
    sources: dict[str, SourceFile],
    color: bool = False,
) -> str:
    """``path:line:col: error[CODE]: message``, the source line, a caret, help."""
    out: list[str] = []
    for d in diagnostics:
        out.append(_render_one(d, sources.get(d.span.path), color))
    return "\n".join(out)


def _render_one(d: Diagnostic, source: SourceFile | None, color: bool) -> str:
    def paint(code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    level = paint(_RED if d.is_error else _YELLOW, f"{d.severity.value}[{d.code}]")
    head = f"{paint(_BOLD, f'{d.span.path}:{d.span.line}:{d.span.col}:')} {level}: {d.message}"
    lines = [head]
    if source is not None:
        text = source.line_text(d.span.line).rstrip("\r").expandtabs(1)
        if text.strip():
            gutter = str(d.span.line)
            pad = " " * len(gutter)
            if d.span.end_line == d.span.line:
                width = max(1, d.span.end_col - d.span.col)
            else:
                width = max(1, len(text) - d.span.col + 1)
            text, column, width = _window(text, d.span.col, width)
            caret = " " * (column - 1) + "^" * width
            lines.append(f"{pad} {paint(_BLUE, '|')}")
            lines.append(f"{paint(_BLUE, gutter)} {paint(_BLUE, '|')} {text}")
            lines.append(f"{pad} {paint(_BLUE, '|')} {paint(_RED if d.is_error else _YELLOW, caret)}")
    if d.help:
        lines.append(f"  {paint(_BOLD, 'help:')} {d.help}")
    return "\n".join(lines)


SNIPPET_WIDTH = 100


def _window(text: str, col: int, width: int) -> tuple[str, int, int]:
    """A long line cut to SNIPPET_WIDTH characters around ``col`` (marked with …), and the caret's place in it."""
    if len(text) <= SNIPPET_WIDTH:
        return text, col, width
    start = max(0, min(col - 1 - SNIPPET_WIDTH // 3, len(text) - SNIPPET_WIDTH))
    end = start + SNIPPET_WIDTH
    shown = ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")
    column = col - start + (1 if start else 0)
    return shown, column, max(1, min(width, end - (col - 1)))


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diagnostics], indent=2)


def summary(diagnostics: list[Diagnostic]) -> str:
    errors = sum(1 for d in diagnostics if d.is_error)
    warnings = len(diagnostics) - errors
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts) if parts else "no problems found"
