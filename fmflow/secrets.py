"""Secrets: the one rule for what fmflow never writes down.

Everything fmflow writes outside the process — run traces, the response
cache, error messages, the output of ``fmflow run``, exporters — passes its
text through a :class:`SecretMasker`, which replaces with ``***``:

- credentials in URLs, always: ``scheme://user:pass@host`` → ``scheme://***@host``;
- the values of the environment variables a run reads with ``env()``, of
  the variables named by ``api_key_env``, and of ``OPENAI_API_KEY``;
- in structured data, the value under any key named like a credential
  (``api_key``, ``Authorization``, ``password``, ``secret``, ``token``, …).

The checker uses :func:`looks_like_key` to refuse a key written where the
name of a variable belongs (``api_key_env: "sk-…"``).

This module imports nothing heavy: ``fmflow check`` uses it.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections import Counter
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

MASK = "***"
MIN_SECRET = 4           # shorter "secrets" would mask ordinary words
ENV_VAR_NAME = re.compile(r"[A-Z_][A-Z0-9_]*\Z")

# `scheme://userinfo@`: the userinfo stops at what ends an authority or a quoted URL.
_URL_CREDENTIALS = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#\"'<>]+@")
# Key names whose values are credentials whatever they hold. Matched on the
# lower-cased name with "-" read as "_"; "token" only as a whole word so that
# tokens_in / max_tokens stay visible.
_SECRET_KEY = re.compile(
    r"(api_?key|authori[sz]ation|passw(or)?d|secret(_?key)?|(^|_)token|private_?key|access_?key)$")
# Prefixes of the keys that providers hand out (OpenAI, Anthropic, Stripe, GitHub,
# GitLab, Hugging Face, Slack, AWS, Google).
_KEY_PREFIX = re.compile(
    r"((sk|pk|rk)[-_]|(ghp|gho|ghu|ghs|ghr|github_pat|glpat|hf|xox[abeoprs])[-_])[\w\-]{6,}"
    r"|(AKIA|ASIA)[A-Z0-9]{12,}|AIza[\w\-]{20,}|Bearer\s")


def mask_url_credentials(text: str) -> str:
    """``scheme://user:pass@host`` → ``scheme://***@host``, anywhere in ``text``."""
    if "@" in text and "://" in text:
        return _URL_CREDENTIALS.sub(lambda m: m.group(1) + MASK + "@", text)
    return text


def is_secret_key_name(name: str) -> bool:
    """Whether a field named ``name`` holds a credential (``api_key``, ``X-Api-Key``, ``token``…)."""
    return bool(_SECRET_KEY.search(name.lower().replace("-", "_")))


def is_env_var_name(text: str) -> bool:
    return bool(ENV_VAR_NAME.match(text))


def looks_like_key(text: str) -> bool:
    """Whether ``text`` looks like a credential rather than a name: a provider's key
    prefix (``sk-``, ``ghp_``, ``AKIA``…), or long text without spaces that is random
    (high entropy) or holds a long run of mixed letters and digits."""
    text = text.strip()
    if len(text) >= 8 and _KEY_PREFIX.match(text):
        return True
    if len(text) < 20 or any(c.isspace() for c in text):
        return False
    mixed = any(c.isdigit() for c in text) or (any(c.islower() for c in text) and any(c.isupper() for c in text))
    if mixed and _entropy(text) >= 4.0:
        return True
    return any(len(part) >= 16 and any(c.isdigit() for c in part) and any(c.isalpha() for c in part)
               for part in re.split(r"[_\-.]", text))


def _entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


class SecretMasker:
    """The secrets of one run (or process) and the rule that hides them.

    Secrets may be added while the run goes on (an ``env()`` read in a flow
    body); every writer holding the masker sees them from then on. Thread-safe.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern | None = None
        self._lock = threading.Lock()
        self.version = 0                  # bumped on every new secret: lets writers drop memoised text
        for secret in secrets:
            self.add(secret)

    # -- what is secret ---------------------------------------------------

    def add(self, value: Any) -> None:
        """Treat ``value`` as a secret (ignored when not a string or shorter than 4 characters)."""
        if not isinstance(value, str) or len(value.strip()) < MIN_SECRET or value in self._secrets:
            return
        with self._lock:
            self._secrets.add(value)
            # Longest first: a secret that contains another is masked whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered)))
            self.version += 1

    def add_env(self, name: Any) -> None:
        """Treat the value of environment variable ``name`` as a secret, when it is set."""
        if isinstance(name, str) and name:
            self.add(os.environ.get(name))

    def add_url(self, url: Any) -> None:
        """Treat the password (and user) written in a URL as secrets, wherever they appear."""
        if not isinstance(url, str) or "@" not in url:
            return
        try:
            parts = urlsplit(url)
        except ValueError:
            return
        self.add(parts.password)
        if parts.password is None:
            self.add(parts.username)  # `https://KEY@host`: the user part is the key

    def copy(self) -> "SecretMasker":
        """A masker with the same secrets, to learn more on its own (no pattern is rebuilt)."""
        other = SecretMasker()
        with self._lock:
            other._secrets = set(self._secrets)
            other._pattern = self._pattern
            other.version = self.version
        return other

    def __len__(self) -> int:
        return len(self._secrets)

    @property
    def pattern(self) -> re.Pattern | None:
        """What ``mask`` looks for (None: no secret): maskers with the same one mask alike."""
        return self._pattern

    def secrets(self) -> list[str]:
        return list(self._secrets)

    # -- masking --------------------------------------------------------

    def mask(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None and pattern.search(text):
            text = pattern.sub(MASK, text)
        return mask_url_credentials(text)

    def reveals(self, text: str) -> bool:
        """Whether ``text`` holds something :meth:`mask` would hide."""
        return self.mask(text) != text

    def mask_data(self, value: Any) -> Any:
        """A copy of JSON-like data with every string masked and the values under
        credential-named keys replaced; other values are returned as they are."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {self.mask(k) if isinstance(k, str) else k:
                    MASK if isinstance(k, str) and v is not None and is_secret_key_name(k) else self.mask_data(v)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.mask_data(item) for item in value]
        return value


class MaskedStream:
    """Text that arrives in pieces (a streamed reply), masked before it is shown.

    Pieces are passed on as they come, except for what could still turn into
    a secret: the end of the text that begins a known secret, and a last word
    holding ``://`` (its credentials may follow). That part is held back until
    more arrives or :meth:`flush`. The last word already shown is masked
    together with the new text, so a URL whose scheme came in an earlier piece
    is still recognised. ``restart`` forgets what is held back and tells the
    listener the text so far is void.
    """

    HOLD_LIMIT = 4096   # never hold back more than this

    def __init__(self, masker: SecretMasker, write: Callable[[str], None],
                 clean: Callable[[str], str] = lambda text: text) -> None:
        self.masker, self._write, self._clean = masker, write, clean
        self._held = ""
        self._shown_word = ""   # the end of the text shown so far, after its last whitespace

    def write(self, piece: str) -> None:
        held = self._held + self._clean(piece)
        keep = self._undecided(held)
        self._held = held[len(held) - keep:] if keep else ""
        self._show(held[:len(held) - keep])

    def flush(self) -> None:
        held, self._held = self._held, ""
        self._show(held)

    def restart(self) -> None:
        self._held = self._shown_word = ""
        restart = getattr(getattr(self._write, "__self__", None), "restart", None)
        if restart is not None:
            restart()

    def _show(self, text: str) -> None:
        if not text:
            return
        context = self._shown_word
        masked = self.masker.mask(context + text)
        shown = masked[len(context):] if masked.startswith(context) else self.masker.mask(text)
        cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"))
        self._shown_word = (context + text if cut < 0 else text[cut + 1:])[-256:]
        self._write(shown)

    def _undecided(self, text: str) -> int:
        """How many characters at the end of ``text`` could still become part of a secret."""
        if len(text) > self.HOLD_LIMIT:
            return 0
        keep = max((k for secret in self.masker.secrets() for k in range(min(len(secret) - 1, len(text)), 0, -1)
                    if text.endswith(secret[:k])), default=0)
        cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"))
        word = text[cut + 1:]
        if "://" in word and not any(c in word.partition("://")[2] for c in "/?#") or word.endswith((":", ":/")):
            keep = max(keep, len(word))
        return keep
