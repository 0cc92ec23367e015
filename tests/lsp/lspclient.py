"""A small synchronous LSP client that drives `python -m fmflow lsp` in a subprocess.

JSON-RPC over the server's stdin/stdout, as an editor speaks it: a reader
thread files responses by id and keeps notifications in order, so a test can
wait for the next `publishDiagnostics` of a file. ``raw`` sends bytes as
they are, for malformed messages. The process is always stopped: ``close``
asks for shutdown and exit, then kills what is left.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


class ResponseError(Exception):
    def __init__(self, error: dict) -> None:
        super().__init__(error.get("message"))
        self.code = error.get("code")


class LspClient:
    def __init__(self, cwd: Path) -> None:
        environment = {k: v for k, v in os.environ.items() if k not in ("FMFLOW_DEBUG", "FMFLOW_STRICT")}
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
        self.process = subprocess.Popen([sys.executable, "-m", "fmflow", "lsp"], cwd=cwd, env=environment,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._next_id = 0
        self._responses: dict[int, dict] = {}
        self._arrived = threading.Condition()
        self.notifications: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr: list[bytes] = []
        self._stderr_reader = threading.Thread(target=lambda: self._stderr.extend(self.process.stderr), daemon=True)
        self._stderr_reader.start()

    # --------------------------------------------------------------- wire
    def raw(self, body: bytes) -> None:
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def _send(self, message: dict) -> None:
        self.raw(json.dumps(message).encode("utf-8"))

    def _read(self) -> None:
        stream = self.process.stdout
        while True:
            length = None
            while True:
                line = stream.readline()
                if not line:
                    return
                if not line.strip():
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            message = json.loads(stream.read(length))
            if "method" not in message:  # a response; to a message whose id is unknown, without one
                with self._arrived:
                    self._responses[message.get("id")] = message
                    self._arrived.notify_all()
            elif "id" in message:  # a request from the server (e.g. workspace/configuration): answer null
                self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            else:
                self.notifications.put(message)

    # ------------------------------------------------------------ messages
    def notify(self, method: str, params: dict | None = None) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def send_request(self, method: str, params=None) -> int:
        self._next_id += 1
        self._send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        return self._next_id

    def response(self, request_id: int, timeout: float = TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while request_id not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise AssertionError(f"no response to request {request_id}; stderr: {self.stderr()}")
                self._arrived.wait(min(left, 0.5))
            return self._responses.pop(request_id)

    def request(self, method: str, params=None, timeout: float = TIMEOUT):
        reply = self.response(self.send_request(method, params), timeout)
        if "error" in reply:
            raise ResponseError(reply["error"])
        return reply.get("result")

    def diagnostics(self, uri: str, timeout: float = TIMEOUT) -> list[dict]:
        """The next diagnostics published for ``uri`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no diagnostics for {uri}; stderr: {self.stderr()}")
            try:
                message = self.notifications.get(timeout=left)
            except queue.Empty:
                continue
            if message.get("method") == "textDocument/publishDiagnostics" and message["params"]["uri"] == uri:
                return message["params"]["diagnostics"]

    def drain(self, quiet: float = 0.3) -> list[dict]:
        """The notifications that arrive until none has come for ``quiet`` seconds."""
        drained = []
        while True:
            try:
                drained.append(self.notifications.get(timeout=quiet))
            except queue.Empty:
                return drained

    def stderr(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    # ----------------------------------------------------------- lifecycle
    def initialize(self, root: Path) -> dict:
        result = self.request("initialize", {
            "processId": os.getpid(), "rootUri": root.as_uri(),
            "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
            "capabilities": {"textDocument": {"hover": {"contentFormat": ["markdown"]}}},
        })
        self.notify("initialized", {})
        return result

    def open(self, path: Path, text: str | None = None, version: int = 1) -> str:
        uri = path.as_uri()
        text = path.read_text(encoding="utf-8") if text is None else text
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "fmflow", "version": version, "text": text}})
        return uri

    def change(self, uri: str, text: str, version: int) -> None:
        self.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                               "contentChanges": [{"text": text}]})

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.request("shutdown", timeout=5)
                self.notify("exit")
                self.process.wait(timeout=5)
        except (AssertionError, OSError, ResponseError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
                try:
                    stream.close()
                except OSError:
                    pass


def position(text: str, needle: str, occurrence: int = 0, delta: int = 0) -> dict:
    """The LSP position (UTF-16 columns) of the ``occurrence``-th ``needle`` in ``text``, plus ``delta``."""
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    index += delta
    line = text.count("\n", 0, index)
    line_start = text.rfind("\n", 0, index) + 1
    return {"line": line, "character": len(text[line_start:index].encode("utf-16-le")) // 2}
