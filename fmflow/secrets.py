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

    def __len__(self) -> int:
        return len(self._secrets)

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

    A piece may end in the middle of a secret, so the text after the last
    whitespace is held back until more arrives (or :meth:`flush`); a secret
    that itself contains whitespace could therefore show in part. ``restart``
    forgets what is held back and tells the listener the text so far is void.
    """

    HOLD_LIMIT = 4096   # a run of text without whitespace longer than this is shown anyway

    def __init__(self, masker: SecretMasker, write: Callable[[str], None],
                 clean: Callable[[str], str] = lambda text: text) -> None:
        self.masker, self._write, self._clean = masker, write, clean
        self._held = ""

    def write(self, piece: str) -> None:
        held = self._held + self._clean(piece)
        cut = max(held.rfind(" "), held.rfind("\n"), held.rfind("\t"))
        if cut < 0 and len(held) < self.HOLD_LIMIT:
            self._held = held
            return
        shown, self._held = (held[:cut + 1], held[cut + 1:]) if cut >= 0 else (held, "")
        self._write(self.masker.mask(shown))

    def flush(self) -> None:
        if self._held:
            held, self._held = self._held, ""
            self._write(self.masker.mask(held))

    def restart(self) -> None:
        self._held = ""
        restart = getattr(getattr(self._write, "__self__", None), "restart", None)
        if restart is not None:
            restart()
