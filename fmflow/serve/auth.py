"""What guards every request before it reaches a route: the bearer token and the body size.

Both are plain ASGI middleware (not Starlette's BaseHTTPMiddleware, which
wraps every response in a task and a memory stream): a refused request is
answered without touching the app, an accepted one passes through untouched.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_ENV = "FMFLOW_SERVE_TOKEN"
OPEN_PATHS = frozenset({"/healthz"})   # answered without a token: load balancers probe it


async def send_json(send: Send, status: int, body: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


class BearerAuth:
    """Every HTTP request but the open paths needs ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str, on_reject: Callable[[str], None] | None = None) -> None:
        self.app = app
        self._token = token.encode()
        self._on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = _bearer(scope)
        # compare_digest: the time taken does not tell how much of a guess was right.
        if given is not None and hmac.compare_digest(given, self._token):
            await self.app(scope, receive, send)
            return
        if self._on_reject is not None:
            self._on_reject("unauthorized")
        challenge = b'Bearer realm="fmflow"' if given is None else b'Bearer realm="fmflow", error="invalid_token"'
        message = "missing bearer token" if given is None else "wrong bearer token"
        await send_json(send, 401, {"error": f"{message}: send the header 'Authorization: Bearer <token>' "
                                             f"with the token the server was given in {TOKEN_ENV}"},
                        [(b"www-authenticate", challenge)])


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Requests with a body over ``limit`` bytes get 413, declared (Content-Length) or streamed."""

    def __init__(self, app: ASGIApp, limit: int, on_reject: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.limit = limit
        self._on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counted_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # a chunked body that does not say its size
                    raise BodyTooLarge()
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        if self._on_reject is not None:
            self._on_reject("too_large")
        await send_json(send, 413, {"error": f"the request body is over the server's limit of {self.limit} bytes "
                                             "(fmflow serve --max-body-size)"})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
