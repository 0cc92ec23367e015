"""Reading HTTP reply bodies with a ceiling on their *decoded* size.

A server (hostile, or a proxy gone wrong) can send 300 KB of gzip that
decodes to 300 MB. httpx decodes a whole network chunk at once, so fmflow
asks only for the encodings it decodes itself (``ACCEPT_ENCODING``) and
inflates them with ``zlib``'s ``max_length``: no piece ever grows past what
is left of the limit, and reading stops as soon as the body passes it.

Used by the OpenAI-compatible chat provider (plain and streamed replies) and
by the ``openai:`` embedder, which talk to the same kind of servers.
"""

from __future__ import annotations

import time
import zlib
from typing import Any, AsyncIterator, Iterator

# The most a reply may hold once decoded. Chat replies are kilobytes; a
# batch of embeddings is a few megabytes. Past this the server is broken.
MAX_REPLY_BYTES = 32 * 1024 * 1024
# An error reply is read this far, for its message; the rest is dropped.
MAX_ERROR_BYTES = 64 * 1024
ACCEPT_ENCODING = "gzip, deflate"
_STEP = 1024 * 1024

__all__ = ["ACCEPT_ENCODING", "MAX_ERROR_BYTES", "MAX_REPLY_BYTES", "BodyError", "aiter_body", "iter_body",
           "read_body", "read_body_sync"]


class BodyError(Exception):
    """The body is larger than allowed or cannot be decoded; the message says which."""


class _CappedDecoder:
    """Decodes raw body bytes (identity, gzip or deflate), counting the decoded size.

    Past ``limit``: a BodyError, or with ``truncate`` the bytes up to the limit and ``full`` set.
    """

    def __init__(self, content_encoding: str | None, limit: int, truncate: bool = False) -> None:
        self.limit, self.size, self.truncate, self.full = limit, 0, truncate, False
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise BodyError(f"the reply is encoded as '{content_encoding}', which fmflow did not ask for")
        self.coding = codings[0] if codings else None
        self._inflate: Any = None
        if self.coding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.coding == "deflate":  # zlib-wrapped as the RFC says; raw deflate is tried if that fails
            self._inflate = zlib.decompressobj()
        self._started = False

    def feed(self, raw: bytes) -> bytes:
        if self._inflate is None:
            return self._count(raw)
        try:
            return self._inflate_some(raw)
        except zlib.error as error:
            if self.coding == "deflate" and not self._started:
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                self._started = True
                return self.feed(raw)
            raise BodyError(f"the {self.coding} reply cannot be decoded ({error})") from None

    def _inflate_some(self, data: bytes) -> bytes:
        pieces = []
        while data and not self.full:
            # max_length: never inflate more than one byte past the limit, and in
            # steps of at most _STEP (zlib builds a piece, then copies it whole).
            piece = self._inflate.decompress(data, min(self.limit - self.size + 1, _STEP))
            self._started = True
            pieces.append(self._count(piece))
            data = self._inflate.unconsumed_tail
        return b"".join(pieces)

    def flush(self) -> bytes:
        if self._inflate is None or self.full:
            return b""
        try:
            return self._count(self._inflate.flush())
        except zlib.error as error:
            raise BodyError(f"the {self.coding} reply cannot be decoded ({error})") from None

    def _count(self, piece: bytes) -> bytes:
        room = self.limit - self.size
        self.size += len(piece)
        if self.size <= self.limit:
            return piece
        if not self.truncate:
            raise BodyError(f"the reply is larger than {_size(self.limit)} once decoded; fmflow stopped "
                            f"reading it")
        self.full = True
        return piece[:room]


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n >= 1024 * 1024 and n % (1024 * 1024) == 0 else f"{n} bytes"


def _decoder(headers: Any, limit: int, truncate: bool) -> _CappedDecoder:
    """The decoder of a reply; an unencoded body that says it is too large fails before it is read."""
    length = headers.get("content-length")
    if not truncate and length and length.isdigit() and not headers.get("content-encoding") \
            and int(length) > limit:
        raise BodyError(f"the reply is larger than {_size(limit)} ({int(length)} bytes); fmflow did not read it")
    return _CappedDecoder(headers.get("content-encoding"), limit, truncate)


def _identity(decoder: _CappedDecoder) -> _CappedDecoder:
    decoder.coding, decoder._inflate = None, None
    return decoder


async def aiter_body(response: Any, limit: int = MAX_REPLY_BYTES, *, truncate: bool = False) -> AsyncIterator[bytes]:
    """The decoded body of a streamed httpx response, piece by piece; BodyError past ``limit``
    (with ``truncate``: the pieces up to ``limit``, then the end)."""
    decoder = _decoder(response.headers, limit, truncate)
    if response.is_stream_consumed:  # read already (an httpx.MockTransport reply): decoded, in memory
        yield _identity(decoder).feed(response.content)
        return
    async for raw in response.aiter_raw():
        piece = decoder.feed(raw)
        if piece:
            yield piece
        if decoder.full:
            return
    tail = decoder.flush()
    if tail:
        yield tail


async def read_body(response: Any, limit: int = MAX_REPLY_BYTES, *, truncate: bool = False) -> bytes:
    """The whole decoded body; past ``limit`` a BodyError, or with ``truncate`` its first ``limit`` bytes."""
    return b"".join([piece async for piece in aiter_body(response, limit, truncate=truncate)])


def iter_body(response: Any, limit: int = MAX_REPLY_BYTES, *, truncate: bool = False,
              deadline: float | None = None) -> Iterator[bytes]:
    """aiter_body for a synchronous httpx response; past ``deadline`` (a time.monotonic() value) a
    TimeoutError: httpx's own timeouts are per read, so a body dripping in never ends without it."""
    decoder = _decoder(response.headers, limit, truncate)
    if response.is_stream_consumed:
        yield _identity(decoder).feed(response.content)
        return
    for raw in response.iter_raw():
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the reply did not arrive whole in time")
        piece = decoder.feed(raw)
        if piece:
            yield piece
        if decoder.full:
            return
    tail = decoder.flush()
    if tail:
        yield tail


def read_body_sync(response: Any, limit: int = MAX_REPLY_BYTES, *, truncate: bool = False,
                   deadline: float | None = None) -> bytes:
    """read_body for a synchronous httpx response (with iter_body's ``deadline``)."""
    return b"".join(iter_body(response, limit, truncate=truncate, deadline=deadline))
