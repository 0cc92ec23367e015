"""Servers for the serve tests: `fmflow serve` in a subprocess, or the app under uvicorn in a thread.

Both listen on a free loopback port (port 0, read back from the socket) and
are always stopped by the test that started them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
ANNOUNCE = re.compile(r"fmflow: serving .* on (http://\S+) ")

# Offline flows for every route: an echo model, a priced and a cached model,
# typed inputs, a failing tool and a slow (async, cancellable) one.
FLOWS = '''
model echo {
  provider: "replay"
  options: { echo: true }
}

model priced {
  provider: "replay"
  options: { responses: [{ text: "a priced answer", tokens_in: 7, tokens_out: 3, cost: 0.25 }], cycle: true }
}

model cached {
  provider: "replay"
  temperature: 0
  options: { responses: ["first answer", "second answer"], cycle: true }
}

type Answer {
  text: str
  score: float
}

enum Mood { happy, sad }

prompt say(q: str) -> str {
  model: echo
  template: "You said {{ q }}"
}

prompt pay(q: str) -> str {
  model: priced
  template: "{{ q }}"
}

prompt remember(q: str) -> str {
  model: cached
  template: "{{ q }}"
}

tool boom(text: str) -> str = python("serve_tools:boom")
tool nap(seconds: float) -> str = python("serve_tools:nap")

flow hello(q: str) -> str {
  return say(q)
}

flow typed(n: int, ratio: float, mood: Mood, tags: list[str], note: str?) -> Answer {
  return Answer(text: join(tags, ","), score: ratio * n)
}

flow fails(text: str) -> str {
  return boom(text)
}

flow slow(seconds: float) -> str {
  return nap(seconds)
}

flow paid(q: str) -> str {
  return pay(q)
}

flow recall(q: str) -> str {
  return remember(q)
}
'''

TOOLS = '''
import asyncio


def boom(text):
    raise ValueError(f"cannot handle {text!r}")


async def nap(seconds):
    await asyncio.sleep(seconds)
    return f"slept {seconds}"
'''


def write_flows(folder: Path, text: str = FLOWS, name: str = "flows.fmflow") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    (folder / "serve_tools.py").write_text(TOOLS, encoding="utf-8")
    return path


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FMFLOW_SERVE_TOKEN", "FMFLOW_DEBUG", "FMFLOW_MODEL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_fmflow(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m fmflow ARGS` to completion (for commands that stop before serving)."""
    return subprocess.run([sys.executable, "-m", "fmflow", *args], cwd=cwd, env=env or serve_env(),
                          capture_output=True, text=True, timeout=60)


class ServeProcess:
    """`python -m fmflow serve …` on port 0; output goes to files (no pipe can fill up)."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.cwd = cwd
        self.stdout_path, self.stderr_path = cwd / "serve.out", cwd / "serve.err"
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "fmflow", "serve", *args, "--port", "0"],
                                            cwd=cwd, env=env or serve_env(), stdout=out, stderr=err)
        self.url = self._wait_for_url()

    def _wait_for_url(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = ANNOUNCE.search(self.stderr())
            if found:
                self._wait_healthy(found.group(1), deadline)
                return found.group(1)
            if self.process.poll() is not None:
                raise AssertionError(f"fmflow serve exited with {self.process.returncode}:\n{self.stderr()}")
            time.sleep(0.05)
        raise AssertionError(f"fmflow serve did not start in {timeout}s:\n{self.stderr()}")

    def _wait_healthy(self, url: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"/healthz never answered:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class ThreadServer:
    """An app under uvicorn in a thread of this process (its own event loop), on a free loopback port."""

    def __init__(self, app) -> None:
        import uvicorn

        from fmflow.serve.server import listen

        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        sock = listen("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "uvicorn did not stop"
