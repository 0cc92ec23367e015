"""Throughput and latency of `fmflow serve` beside LangServe serving the same one-prompt chain.

    python benchmarks/serve_load.py [--requests N] [--concurrency C] [--rounds R] [--quick] [--profile]

Both servers run in subprocesses under uvicorn (one worker, access log off,
loopback, a free port) and are driven by the same client: an aiohttp
ClientSession with C connections, C requests in flight at once, N requests
per round. (Not httpx: its connection pool costs the client more CPU than
either server spends on a request, so the figures measured the client, whose
queueing made a p99 of over a second while the server idled 60 % of the time.)
Rounds alternate between the two servers so that both see the same machine
load; the figures printed are the medians over rounds.

- fmflow: ``fmflow serve flow.fmflow`` with a one-prompt flow
  ``ask(q: str) -> str`` on a replay model that echoes the prompt (instant);
  response cache and traces on, as `fmflow serve` always runs.
  ``POST /flows/ask {"q": …}``.
- LangServe: ``add_routes(app, ChatPromptTemplate | FakeListChatModel |
  StrOutputParser, path="/ask")``, ``POST /ask/invoke {"input": {"q": …}}``.
  Without langserve installed, a FastAPI route calling the same LCEL chain
  with ``ainvoke`` stands in (and the table says so).

Prints requests/second, p50 and p99 latency and the server process's CPU
time per request (read from /proc: unlike wall time it hardly moves when
other processes load the machine) of each, and fmflow's ratios
(throughput: fmflow / baseline, higher is better; latency and CPU: fmflow /
baseline, lower is better). Nothing is asserted. ``--profile`` runs the
fmflow server under cProfile for one extra round and prints where its time
goes (own time, top functions).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]

FLOW = '''
model instant {
  provider: "replay"
  options: { echo: true }
}

prompt say(q: str) -> str {
  model: instant
  template: "You said {{ q }}"
}

flow ask(q: str) -> str {
  return say(q)
}
'''

# The baseline server: the same work in LCEL, served by LangServe (or a plain FastAPI route).
BASELINE = '''
import socket, sys
import uvicorn
from fastapi import FastAPI
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

chain = ChatPromptTemplate.from_template("You said {q}") | FakeListChatModel(responses=["ok"]) | StrOutputParser()
app = FastAPI()
try:
    from langserve import add_routes
    add_routes(app, chain, path="/ask")
    kind = "langserve"
except ImportError:
    @app.post("/ask/invoke")
    async def invoke(body: dict) -> dict:
        return {"output": await chain.ainvoke(body["input"])}
    kind = "fastapi+lcel"

sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(f"{kind} on http://127.0.0.1:{sock.getsockname()[1]} ", file=sys.stderr, flush=True)
uvicorn.Server(uvicorn.Config(app, access_log=False, log_level="warning")).run(sockets=[sock])
'''

ANNOUNCE = re.compile(r"(fmflow: serving .*|langserve|fastapi\+lcel) on (http://\S+) ")


@dataclass
class Round:
    seconds: float
    latencies: list[float]
    failures: int
    cpu_seconds: float = 0.0     # the server process's own CPU time during the round

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_seconds / max(1, len(self.latencies)) * 1000

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    def quantile(self, q: int) -> float:
        return statistics.quantiles(self.latencies, n=100)[q - 1] * 1000


class Server:
    def __init__(self, name: str, command: list[str], cwd: Path, path: str, body) -> None:
        self.name, self.path, self.body = name, path, body
        self.err = cwd / f"{name}.err"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        env.pop("FMFLOW_SERVE_TOKEN", None)
        with open(self.err, "w") as err:
            self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        self.url, self.kind = self._wait()

    def _wait(self) -> tuple[str, str]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = ANNOUNCE.search(self.err.read_text())
            if found:
                return found.group(2), found.group(1)
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} server exited:\n{self.err.read_text()}")
            time.sleep(0.05)
        raise SystemExit(f"{self.name} server did not start:\n{self.err.read_text()}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server so far (Linux /proc): unlike wall time, it does not
        grow when other processes share the machine."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def load(server: Server, requests: int, concurrency: int) -> Round:
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=server.url, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        counter = iter(range(requests))

        async def worker() -> None:
            nonlocal failures
            for i in counter:
                started = time.perf_counter()
                try:
                    async with session.post(server.path, json=server.body(i)) as reply:
                        await reply.read()
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:  # counted, the first few shown
                    failures += 1
                    if failures <= 3:
                        print(f"  {server.name}: request {i} failed: {type(error).__name__}: {error}", file=sys.stderr)
                    continue
                latencies.append(time.perf_counter() - started)
                failures += reply.status != 200

        cpu, started = server.cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Round(time.perf_counter() - started, latencies, failures, server.cpu_seconds() - cpu)


def start_servers(folder: Path, profile_to: Path | None = None) -> tuple[Server, Server]:
    (folder / "flow.fmflow").write_text(textwrap.dedent(FLOW), encoding="utf-8")
    (folder / "baseline.py").write_text(BASELINE, encoding="utf-8")
    prefix = [sys.executable] + (["-m", "cProfile", "-o", str(profile_to)] if profile_to else [])
    fmflow = Server("fmflow", prefix + ["-m", "fmflow", "serve", "flow.fmflow", "--port", "0", "--no-access-log"],
                    folder, "/flows/ask", lambda i: {"q": f"question {i}"})
    baseline = Server("baseline", [sys.executable, "baseline.py"], folder, "/ask/invoke",
                      lambda i: {"input": {"q": f"question {i}"}})
    return fmflow, baseline


def measure(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fmflow, baseline = start_servers(Path(tmp))
        try:
            for server in (fmflow, baseline):  # warm-up: imports, first-request caches, connections
                asyncio.run(load(server, min(200, args.requests), args.concurrency))
            rounds: dict[str, list[Round]] = {"fmflow": [], "baseline": []}
            for _ in range(args.rounds):
                for server in (fmflow, baseline):
                    rounds[server.name].append(asyncio.run(load(server, args.requests, args.concurrency)))
        finally:
            fmflow.stop()
            baseline.stop()
        report(args, rounds, baseline.kind)


def report(args, rounds: dict[str, list[Round]], baseline_kind: str) -> None:
    def median(name: str, figure) -> float:
        return statistics.median(figure(r) for r in rounds[name])

    print(f"serve load: {args.requests} requests × {args.rounds} rounds at concurrency {args.concurrency}, "
          f"one-prompt flow, instant model; Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"{'server':<20}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}{'failed':>8}")
    names = {"fmflow": "fmflow serve", "baseline": baseline_kind}
    for name in ("fmflow", "baseline"):
        failed = sum(r.failures for r in rounds[name])
        print(f"{names[name]:<20}{median(name, lambda r: r.rps):>8.0f}{median(name, lambda r: r.quantile(50)):>9.1f}"
              f"{median(name, lambda r: r.quantile(99)):>9.1f}{median(name, lambda r: r.cpu_ms_per_request):>12.2f}"
              f"{failed:>8}")

    def ratio(figure) -> float:
        return median("fmflow", figure) / median("baseline", figure)

    print(f"fmflow / {baseline_kind}: throughput {ratio(lambda r: r.rps):.2f}× (higher is better); "
          f"p50 latency {ratio(lambda r: r.quantile(50)):.2f}×, p99 latency {ratio(lambda r: r.quantile(99)):.2f}×, "
          f"server CPU per request {ratio(lambda r: r.cpu_ms_per_request):.2f}× (lower is better)")


def profile(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "fmflow.prof"
        fmflow, baseline = start_servers(Path(tmp), profile_to=stats)
        baseline.stop()
        try:
            asyncio.run(load(fmflow, args.requests, args.concurrency))
        finally:
            fmflow.stop()  # SIGTERM: a graceful exit, so cProfile writes its file
        print("\nfmflow serve under cProfile (own time, top 25):")
        pstats.Stats(str(stats)).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="300 requests, 1 round (a smoke test)")
    parser.add_argument("--profile", action="store_true", help="then profile the fmflow server for one round")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 300, 1
    measure(args)
    if args.profile:
        profile(args)


if __name__ == "__main__":
    main()
