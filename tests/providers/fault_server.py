"""A local OpenAI-compatible server that answers, or fails, on command.

Tests queue replies with ``server.script(ok("hi"), error(429, retry_after=1))``
(and the hostile ones: ``drip(…)`` a byte at a time, ``gzip_bomb(…)``,
``no_content()``, ``html_page()``);
each POST to ``…/chat/completions`` takes the next one (``server.default``
once the queue is empty). Every request is recorded — body, headers, the
client's port (to see connection reuse) and its arrival time — in
``server.requests``.

The server runs in a thread of its own, so it serves whatever event loop the
code under test uses. ``stop()`` interrupts slow replies, shuts every open
connection and joins every thread: a test leaves no thread or socket behind.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    json: Any = None                      # the body as JSON …
    raw: str | None = None                # … or as written (malformed bodies)
    headers: dict[str, str] = field(default_factory=dict)
    events: list[str] | None = None       # a stream: the `data:` payload of each event
    done: bool = True                     # end the stream with `data: [DONE]`
    drop: bool = False                    # cut the connection mid-stream (incomplete chunked body)
    delay: float = 0.0                    # seconds before answering
    drip: float = 0.0                     # seconds between bytes of the body (or events of a stream)
    gzip: bytes | None = None             # a body sent as is, Content-Encoding: gzip (unless headers say)
    content_type: str = "application/json"


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]               # lower-cased names
    body: Any
    client_port: int
    at: float                             # time.monotonic() on arrival


def completion(text: str | None = "ok", *, model: str = "gpt-4o-mini", usage: tuple[int, int] | None = (10, 5),
               tool_calls: list[dict] | None = None) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "model": model,
                            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    if usage is not None:
        body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                         "total_tokens": usage[0] + usage[1]}
    return body


def ok(text: str = "ok", **kwargs) -> Reply:
    return Reply(json=completion(text, **kwargs))


def tool_calls(*calls: tuple[str, dict], text: str | None = None, **kwargs) -> Reply:
    wire = [{"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for i, (name, args) in enumerate(calls, 1)]
    return Reply(json=completion(text, tool_calls=wire, **kwargs))


def error(status: int, message: str = "failed", *, retry_after: str | None = None) -> Reply:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Reply(status=status, json={"error": {"message": message, "type": "test"}}, headers=headers)


def malformed() -> Reply:
    return Reply(raw='{"choices": [ {"message": ')


def no_content(finish_reason: str = "stop", **fields) -> Reply:
    """A reply whose message has `content: null` and no tool calls (plus any other message fields)."""
    body = completion(None)
    body["choices"][0]["finish_reason"] = finish_reason
    body["choices"][0]["message"].update(fields)
    return Reply(json=body)


def html_page(status: int = 200) -> Reply:
    return Reply(status=status, content_type="text/html; charset=utf-8",
                 raw="<!doctype html><html><head><title>Sign in</title></head><body>Please sign in</body></html>")


def drip(seconds_per_byte: float, text: str = "a drip") -> Reply:
    """A whole reply, sent one byte at a time: no single read ever waits long."""
    return Reply(json=completion(text), drip=seconds_per_byte)


def gzip_bomb(decoded_mb: int, *, stream: bool = False, status: int = 200) -> Reply:
    """A body of `decoded_mb` MB, nearly all "a", gzip-compressed about 1000:1: a completion
    whose content is that text, or (``stream``) one server-sent event line that never ends."""
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    if stream:
        head, tail = b'data: {"choices": [{"index": 0, "delta": {"content": "', b""
    else:
        head, tail = json.dumps(completion("@")).encode().split(b"@")
    parts = [packer.compress(head)]
    block = b"a" * (1024 * 1024)
    parts += [packer.compress(block) for _ in range(decoded_mb)]
    parts += [packer.compress(tail), packer.flush()]
    return Reply(status=status, gzip=b"".join(parts),
                 content_type="text/event-stream" if stream else "application/json")


def slow(seconds: float, text: str = "slow") -> Reply:
    return Reply(json=completion(text), delay=seconds)


def chunk(delta: dict | None = None, *, usage: tuple[int, int] | None = None, model: str = "gpt-4o-mini") -> str:
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model,
                            "choices": [] if delta is None else [{"index": 0, "delta": delta}]}
    if usage is not None:
        body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
    return json.dumps(body)


def stream(pieces: list[str], *, usage: tuple[int, int] | None = (7, 3), done: bool = True,
           drop: bool = False) -> Reply:
    """Content pieces as OpenAI streams them: a role chunk, one chunk a piece, a usage-only chunk."""
    events = [chunk({"role": "assistant", "content": ""})] + [chunk({"content": p}) for p in pieces]
    if usage is not None:
        events.append(chunk(None, usage=usage))
    return Reply(events=events, done=done, drop=drop)


def truncated(pieces: list[str]) -> Reply:
    return stream(pieces, usage=None, done=False)


class FaultServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.default: Reply = ok("ok")
        # When set, any request carrying response_format gets a 400, whatever is scripted
        # (a server without structured output), and does not consume the script.
        self.reject_response_format = False
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ control
    def start(self) -> "FaultServer":
        self._httpd = _HTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-server", daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() the server first"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: Reply) -> "FaultServer":
        with self._lock:
            self._script.extend(replies)
        return self

    @property
    def bodies(self) -> list[Any]:
        return [r.body for r in self.requests]

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()               # wakes replies that are sleeping
        self._httpd.shutdown()             # serve_forever returns
        with self._lock:
            for conn in list(self._connections):  # idle keep-alive handlers wake with EOF
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._httpd.server_close()         # closes the listener, joins the handler threads
        self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ serving
    def _next(self, body: Any) -> Reply:
        if self.reject_response_format and isinstance(body, dict) and "response_format" in body:
            return error(400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported "
                              "with this model.")
        with self._lock:
            return self._script.popleft() if self._script else self.default


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False     # so that server_close() joins every handler thread
    block_on_close = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that gave up on a hostile reply resets its connection: expected here
        super().handle_error(request, client_address)


def _handler_for(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so the client's pooling is visible

        def setup(self) -> None:
            super().setup()
            with server._lock:
                server._connections.add(self.connection)

        def finish(self) -> None:
            with server._lock:
                server._connections.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            server.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                            self.client_address[1], time.monotonic()))
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return self._send(error(404, f"no route {self.path}"))
            self._send(server._next(body))

        def _send(self, reply: Reply) -> None:
            if reply.delay and server._stopping.wait(reply.delay):
                self.close_connection = True
                return
            if reply.events is not None:
                return self._stream(reply)
            if reply.gzip is not None:
                data = reply.gzip
            else:
                data = (reply.raw if reply.raw is not None else json.dumps(reply.json)).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            if reply.gzip is not None and "Content-Encoding" not in reply.headers:
                self.send_header("Content-Encoding", "gzip")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not reply.drip:
                return self._write(data)
            for i in range(len(data)):
                if not self._write(data[i:i + 1]) or server._stopping.wait(reply.drip):
                    self.close_connection = True
                    return

        def _write(self, data: bytes) -> bool:
            """False when the client has gone (a test's client gives up on a hostile reply)."""
            try:
                self.wfile.write(data)
                self.wfile.flush()
                return True
            except OSError:
                self.close_connection = True
                return False

        def _stream(self, reply: Reply) -> None:
            self.send_response(reply.status)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            events = list(reply.events) + (["[DONE]"] if reply.done else [])
            for event in events:
                if not self._chunk(f"data: {event}\n\n".encode()):
                    return
                if reply.drip and server._stopping.wait(reply.drip):
                    self.close_connection = True
                    return
            if reply.drop:
                self.close_connection = True  # no terminating chunk: the body is cut
                return
            self._write(b"0\r\n\r\n")

        def _chunk(self, data: bytes) -> bool:
            return self._write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    return Handler
