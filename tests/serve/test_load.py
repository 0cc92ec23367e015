"""1,000 requests at concurrency 50 against `fmflow serve`: none fails. Latency is printed, never asserted."""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx

from servers import ServeProcess, write_flows

REQUESTS, CONCURRENCY = 1000, 50


async def _hammer(url: str) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    failures: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(REQUESTS):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                started = time.perf_counter()
                reply = await client.post("/flows/hello", json={"q": f"request {i}"})
                latencies.append(time.perf_counter() - started)
                if reply.status_code != 200 or reply.json()["output"] != f"You said request {i}":
                    failures.append(f"{i}: {reply.status_code} {reply.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return latencies, failures, time.perf_counter() - started


def test_a_thousand_requests_at_concurrency_50(tmp_path, capsys):
    server = ServeProcess(tmp_path, str(write_flows(tmp_path)), "--no-access-log")
    try:
        latencies, failures, wall = asyncio.run(_hammer(server.url))
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.kill()
    assert failures == []
    assert len(latencies) == REQUESTS
    assert f'fmflow_requests_total{{flow="hello",outcome="ok",route="run"}} {float(REQUESTS)}' in metrics
    assert len(list((tmp_path / ".fmflow" / "runs").glob("*.jsonl"))) == REQUESTS  # one trace per request
    quantiles = statistics.quantiles(latencies, n=100)
    with capsys.disabled():
        print(f"\n  fmflow serve: {REQUESTS} requests at concurrency {CONCURRENCY} in {wall:.2f} s "
              f"({REQUESTS / wall:.0f}/s); latency p50 {quantiles[49] * 1000:.1f} ms, "
              f"p99 {quantiles[98] * 1000:.1f} ms")

