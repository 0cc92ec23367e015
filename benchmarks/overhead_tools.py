"""Sections (d) and (e) of runtime_overhead.py: a chain of tool steps at fmflow's defaults, and rates.

(d) 10 chained async tool steps (``t1 = pass_on(x: x)`` … ``t10``, the tool an
    ``async def`` returning its argument) with fmflow's defaults (traces and
    cache on), traces off, and both off; against LCEL's 10 chained
    ``RunnableLambda`` of an ``async def`` (``ainvoke``) and a bare asyncio task
    per step. µs per step: wall time (median) and CPU time of the process
    (``time.process_time``, mean), both per run / 10; contenders alternate in
    rounds. Target: defaults ≤ 0.10 × LCEL. A run hands its trace to the background
    writer when it ends, so these are latencies; the throughput rows add the
    writer's work: runs back to back, then every trace written out.
(e) 1,000 calls of 50 ms on a model with ``rate: 100/s`` and ``concurrency: 100``:
    the calls start in ten windows of one second, so the last window closes at
    10 s (``last start + 1 period``); target within 2 % of 10 s. Also the
    steady rate between the first and the last window.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

STEPS = 10
TARGET_TOOL_RATIO = 0.10
RATE, RATE_CALLS, RATE_LATENCY = 100, 1000, 0.050
RATE_TARGET = 0.02

TOOLS = '''\
async def pass_on(x):
    return x
'''


def tool_flows(rate_calls: int) -> str:
    chain = "\n".join(f"  t{i} = pass_on(x: {'x' if i == 1 else f't{i - 1}'})" for i in range(1, STEPS + 1))
    return f'''
tool pass_on(x: str) -> str = python("bench_tools:pass_on")

flow tools(x: str) -> str {{
{chain}
  return t{STEPS}
}}

model rated {{
  provider: "replay"
  name: "rated"
  rate: {RATE}/s
  concurrency: 100
}}

prompt limited(q: str) -> str {{
  model: rated
  template: "R: {{{{ q }}}}"
}}

flow rates(qs: list[str]) -> list[str] {{
  out = [limited(q: q) for q in qs]
  return out
}}
'''


async def timed(run: Callable[[], Awaitable[Any]], n: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(n):
        wall, cpu = time.perf_counter(), time.process_time()
        await run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


async def tool_chain(table, workdir: str, quick: bool) -> dict[str, Any]:
    import fmflow
    from langchain_core.runnables import RunnableLambda

    Path(workdir, "bench_tools.py").write_text(TOOLS, encoding="utf-8")
    path = os.path.join(workdir, "bench.fmflow")
    flows = {
        "defaults": fmflow.load(path, "tools", workdir=workdir),
        "traces_off": fmflow.load(path, "tools", trace=False, workdir=workdir),
        "both_off": fmflow.load(path, "tools", trace=False, cache=False, workdir=workdir),
    }

    async def ident(value):
        return value

    lcel = RunnableLambda(ident)
    for _ in range(STEPS - 1):
        lcel = lcel | RunnableLambda(ident)

    async def bare():
        value = "hello"
        for _ in range(STEPS):
            value = await asyncio.ensure_future(ident(value))
        return value

    contenders = {**{k: (lambda f=f: f.arun(x="hello")) for k, f in flows.items()},
                  "lcel": lambda: lcel.ainvoke("hello"), "bare": bare}
    for run in contenders.values():
        assert await run() == "hello"
    warm, per_round, rounds = (10, 20, 2) if quick else (50, 100, 8)
    for run in contenders.values():
        await timed(run, warm)
    gc.collect()
    gc.freeze()
    walls = {k: [] for k in contenders}
    cpus = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            w, c = await timed(run, per_round)
            walls[name] += w
            cpus[name] += c
    wall = {k: statistics.median(v) / STEPS for k, v in walls.items()}
    cpu = {k: statistics.fmean(v) / STEPS for k, v in cpus.items()}
    runs = rounds * per_round
    table.section(f"(d) chain of {STEPS} async tool steps; µs per step, wall (median) and CPU (mean) of {runs} "
                  f"runs each, alternating; LCEL: {STEPS} chained RunnableLambda(async def), ainvoke")
    labels = {"defaults": "fmflow arun, defaults (traces on, cache on)", "traces_off": "fmflow arun, traces off",
              "both_off": "fmflow arun, traces off, cache off", "lcel": "LCEL ainvoke", "bare": "a bare asyncio task"}
    for name, label in labels.items():
        ratio_wall, ratio_cpu = wall[name] / wall["lcel"], cpu[name] / cpu["lcel"]
        target = f"≤ {TARGET_TOOL_RATIO:.2f}× LCEL" if name == "defaults" else ""
        verdict = ("MET" if ratio_wall <= TARGET_TOOL_RATIO else "MISSED") if name == "defaults" else ""
        table.row(label, f"{wall[name] * 1e6:.1f} µs wall, {cpu[name] * 1e6:.1f} µs CPU",
                  f"{ratio_wall:.3f}× / {ratio_cpu:.3f}× CPU" if name != "lcel" else "", target, verdict)
    throughput = await written_throughput(flows, 3 if quick else 8, 100)
    for name, label in (("defaults", "fmflow defaults, every trace written"), ("traces_off", "fmflow traces off")):
        ratio = throughput[name] / wall["lcel"]
        table.row(f"throughput: {label}", f"{throughput[name] * 1e6:.1f} µs/step", f"{ratio:.3f}× LCEL", "", "")
    return {"wall": wall, "cpu": cpu, "throughput": throughput}


async def written_throughput(flows: dict, rounds: int, runs: int) -> dict[str, float]:
    """Seconds per step of ``runs`` runs back to back followed by writing out every trace they
    left to the background writer (best of ``rounds``): what a loop that never waits pays,
    the writer's work included, beside the latency of one run above."""
    from fmflow.observe.background import BACKGROUND

    best = {name: float("inf") for name in ("defaults", "traces_off")}
    for _ in range(rounds):
        for name in best:
            BACKGROUND.flush_all()
            started = time.perf_counter()
            for _ in range(runs):
                await flows[name].arun(x="hello")
            BACKGROUND.flush_all()
            best[name] = min(best[name], (time.perf_counter() - started) / runs / STEPS)
    return best


async def rate_limit(table, workdir: str, quick: bool, starts: list[float]) -> dict[str, float]:
    """``starts`` is filled by the benchmark provider with the monotonic time of each "rated" call."""
    import fmflow

    calls = 300 if quick else RATE_CALLS
    flow = fmflow.load(os.path.join(workdir, "bench.fmflow"), "rates", workdir=workdir)
    starts.clear()
    began = time.monotonic()
    out = await flow.arun(qs=[f"q{i}" for i in range(calls)])
    wall = time.monotonic() - began
    assert len(out) == calls and len(starts) == calls
    starts.sort()
    windows = calls / RATE                           # seconds of windows the calls need
    span = starts[-1] - began + 1.0                  # the last window closes one period after its start
    steady = (calls - RATE) / (starts[-1] - starts[RATE - 1]) if calls > RATE else float("nan")
    error = abs(span - windows) / windows
    table.section(f"(e) {calls} calls × {RATE_LATENCY * 1000:.0f} ms at rate: {RATE}/s, concurrency 100; "
                  f"the calls need {windows:.0f} windows of 1 s")
    table.row("last start + 1 period", f"{span:.3f} s", f"{error * 100:.2f} % off {windows:.1f} s",
              f"within {RATE_TARGET * 100:.0f} %", "MET" if error <= RATE_TARGET else "MISSED")
    table.row("steady rate after the first window", f"{steady:.1f} calls/s", f"{steady / RATE:.3f}× the rate",
              "", "")
    table.row("wall time of the run", f"{wall:.3f} s", "", "", "")
    return {"span": span, "steady": steady, "wall": wall}
