"""A pipeline with an `embed` step: the local engine beside Dask with 2 workers, same run, same machine.

    python benchmarks/pipeline_embed.py [--records N] [--latency SECONDS] [--work N]

The pipeline (written to a temporary folder with N raw records, default 2,000):

    keep(len(record.text) > 10)
    map(enrich)                      a flow: one prompt on a model answering after --latency
                                     (`replay`, default 20 ms), plus a CPU-bound tool that
                                     hashes the text --work times (default 2,000)
    embed(into: "bench", text: …)    MiniLM vectors upserted into a fresh Chroma store

Each engine runs it from a fresh store and cache, at concurrency 64; the
Dask engine starts its LocalCluster of 2 single-threaded worker processes on
127.0.0.1 inside the timed run (as `fmflow pipeline --engine dask` does).
Per-record steps run on the engine; `embed` (like dedupe and sample) runs in
the pipeline's own process, so Dask can only speed up the map stage.

Printed: wall time and records/s of each, the time of the embed stage alone,
the ratio dask/local of records per second, the machine's core count and
load average (the figures of a shared machine move with it). Nothing is
asserted; the ratio is reported as measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PIPELINE = """
    model slow {{
      provider: "replay"
      options: {{ responses: [{{ text: "tag", delay: {latency} }}], cycle: true }}
    }}
    prompt tag(text: str) -> str {{
      model: slow
      template: "Tag: {{{{ text }}}}"
    }}
    tool digest(text: str, rounds: int) -> str = python("bench_tools:digest")

    type Raw {{ id: str, text: str }}
    type Enriched {{ id: str, text: str, tag: str, digest: str }}

    flow enrich(r: Raw) -> Enriched {{
      return Enriched(id: r.id, text: r.text, tag: tag(r.text), digest: digest(r.text, {work}))
    }}

    pipeline bench {{
      source: jsonl("raw.jsonl", type: Raw)
      steps: [
        keep(len(record.text) > 10),
        map(enrich),
        embed(into: "bench", text: record.text, id: record.id, store: env("BENCH_STORE", "store")),
      ]
      sink: jsonl(env("BENCH_OUT", "out.jsonl"))
    }}
"""

TOOLS = '''
import hashlib


def digest(text: str, rounds: int) -> str:
    value = text.encode()
    for _ in range(rounds):
        value = hashlib.sha256(value).digest()
    return value.hex()[:16]
'''

WORDS = ("refund invoice password account team export offline linux discount card meeting order "
         "delivery warranty upgrade plan support login screen crash").split()


def write_records(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(8 + i % 5)]
            f.write(json.dumps({"id": f"r{i}", "text": f"Ticket {i}: " + " ".join(words)}) + "\n")


def run(folder: Path, engine: str, concurrency: int) -> tuple[float, float, int]:
    """(wall seconds, embed-stage seconds, records written) of one run on ``engine``."""
    from fmflow.data import pipeline as pipeline_module
    from fmflow.data.pipeline import run_pipeline

    os.environ["BENCH_STORE"] = str(folder / f"store-{engine}")
    os.environ["BENCH_OUT"] = str(folder / f"out-{engine}.jsonl")
    timings: list[float] = []
    original = pipeline_module._run_whole_step

    def timed(*args):
        started = time.perf_counter()
        try:
            return original(*args)
        finally:
            timings.append(time.perf_counter() - started)

    pipeline_module._run_whole_step = timed
    try:
        started = time.perf_counter()
        result = run_pipeline(str(folder / "bench.fmflow"), engine=engine, concurrency=concurrency,
                              workdir=str(folder / f"work-{engine}"))
        return time.perf_counter() - started, sum(timings), result.written
    finally:
        pipeline_module._run_whole_step = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the model takes per call")
    parser.add_argument("--work", type=int, default=2000, help="sha256 rounds of the CPU-bound tool per record")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fmflow-pipeline-bench-") as tmp:
        folder = Path(tmp)
        (folder / "bench.fmflow").write_text(textwrap.dedent(PIPELINE.format(latency=args.latency,
                                                                              work=args.work)))
        (folder / "bench_tools.py").write_text(TOOLS)
        write_records(folder / "raw.jsonl", args.records)
        from fmflow.resources import stdlib_module

        stdlib_module("std_minilm").embed(["warm up the model once, outside the timings"])
        rows = [(engine, *run(folder, engine, args.concurrency)) for engine in ("local", "dask")]
        same = (folder / "out-local.jsonl").read_text() == (folder / "out-dask.jsonl").read_text()
    print(f"pipeline with embed: {args.records} records, model latency {args.latency * 1000:.0f} ms, "
          f"{args.work} hash rounds per record, concurrency {args.concurrency}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, "
          f"Python {platform.python_version()}")
    for engine, seconds, embed, written in rows:
        print(f"  {engine:<6} {seconds:7.2f} s  {written / seconds:8.1f} records/s  (embed stage {embed:.2f} s, "
              f"{written} written)")
    (_, local, _, written), (_, dask, _, _) = rows
    print(f"  dask / local records per second: {local / dask:.2f}  (2 worker processes on {os.cpu_count()} cores)")
    print(f"  same output on both engines: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
