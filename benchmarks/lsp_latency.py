"""How quickly `fmflow lsp` answers an editor, and whether it keeps its memory.

    python benchmarks/lsp_latency.py [--lines 2000] [--edits 1000] [--samples 40]

Starts the server in a subprocess and drives it with pygls's own
LanguageClient over stdio, on a valid synthetic file of about 2,000 lines
(``check_speed.generate_source``), then prints

- didChange → publishDiagnostics: median and p95 over single-character
  edits that alternate between a clean file and one with an error (so every
  edit changes the diagnostics), with the server's debounce
  (``DEBOUNCE_SECONDS``) taken out, beside the same file parsed and checked
  in this process (``fmflow.api.check_text``, the baseline) and their ratio;
- completion after a ``.``, in a block and among names: median and p95,
  beside the round trip of a request the server answers at once (an unknown
  method: the baseline) and their ratio; target p95 under 100 ms;
- semantic tokens of the whole file: median and p95 beside the same
  baseline; target p95 under 100 ms (an editor asks after every edit);
- the server's resident memory after 1,000 edits against after the first
  50 (the baseline), and their ratio; target within 1.10.

Timings are printed beside their targets, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "benchmarks"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from check_speed import generate_source  # noqa: E402

TARGET_COMPLETION_P95 = 0.100
TARGET_MEMORY_GROWTH = 1.10
CLEAN, BROKEN = "retry: 3", "retry: x"  # one character apart: E101 (unknown name 'x') or nothing


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def resident_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Bench:
    """A pygls client on one open document, waiting for its diagnostics."""

    def __init__(self, path: Path, text: str) -> None:
        from lsprotocol import types
        from pygls.lsp.client import LanguageClient

        self.types = types
        self.client = LanguageClient("fmflow-bench", "1")
        self.path, self.text, self.uri, self.version = path, text, path.as_uri(), 1
        self.published: asyncio.Queue = asyncio.Queue()

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def diagnostics(params):
            if params.uri == self.uri:
                self.published.put_nowait((time.perf_counter(), params.diagnostics))

    async def start(self) -> None:
        t = self.types
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        await self.client.start_io(sys.executable, "-m", "fmflow", "lsp", env=env, cwd=str(self.path.parent))
        await self.client.initialize_async(t.InitializeParams(
            capabilities=t.ClientCapabilities(), root_uri=self.path.parent.as_uri(), process_id=os.getpid()))
        self.client.initialized(t.InitializedParams())
        self.client.text_document_did_open(t.DidOpenTextDocumentParams(
            text_document=t.TextDocumentItem(uri=self.uri, language_id="fmflow", version=1, text=self.text)))
        await self.published.get()

    @property
    def pid(self) -> int:
        return self.client._server.pid

    async def edit(self) -> float:
        """Turn the first `retry: 3` into `retry: x`, or back; seconds until its diagnostics arrive."""
        t = self.types
        broken = CLEAN in self.text[:self.text.index("retry: ") + len(CLEAN)]
        old, new = (CLEAN, BROKEN) if broken else (BROKEN, CLEAN)
        offset = self.text.index(old) + len(old) - 1
        line = self.text.count("\n", 0, offset)
        column = offset - (self.text.rfind("\n", 0, offset) + 1)
        self.text = self.text[:offset] + new[-1] + self.text[offset + 1:]
        self.version += 1
        change = t.TextDocumentContentChangePartial(
            range=t.Range(start=t.Position(line=line, character=column), end=t.Position(line=line, character=column + 1)),
            text=new[-1])
        started = time.perf_counter()
        self.client.text_document_did_change(t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            content_changes=[change]))
        while True:
            arrived, diagnostics = await self.published.get()
            if bool(diagnostics) == broken:
                return arrived - started

    async def timed(self, request) -> float:
        started = time.perf_counter()
        await request
        return time.perf_counter() - started

    async def completion(self, needle: str, delta: int) -> float:
        t = self.types
        offset = self.text.index(needle) + delta
        line = self.text.count("\n", 0, offset)
        column = offset - (self.text.rfind("\n", 0, offset) + 1)
        return await self.timed(self.client.text_document_completion_async(t.CompletionParams(
            text_document=t.TextDocumentIdentifier(uri=self.uri), position=t.Position(line=line, character=column))))

    async def semantic_tokens(self) -> float:
        t = self.types
        return await self.timed(self.client.text_document_semantic_tokens_full_async(
            t.SemanticTokensParams(text_document=t.TextDocumentIdentifier(uri=self.uri))))

    async def round_trip(self) -> float:
        started = time.perf_counter()
        try:
            await self.client.protocol.send_request_async("fmflow/noSuchMethod", {})
        except Exception:  # the answer is an error, and that is the point: nothing is computed
            pass
        return time.perf_counter() - started

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()


def report(label: str, values: list[float], baseline: float, target: float | None = None) -> None:
    p50, p95 = statistics.median(values), percentile(values, 0.95)
    goal = f"  (target p95 < {target * 1000:.0f} ms)" if target else ""
    print(f"{label:<44} p50 {p50 * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  "
          f"baseline {baseline * 1000:6.1f} ms  ratio p50 {p50 / baseline:5.1f}x{goal}")


async def run(lines: int, edits: int, samples: int) -> None:
    from fmflow.api import check_text
    from fmflow.lsp.server import DEBOUNCE_SECONDS

    text = generate_source(lines)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.fmflow"
        path.write_text(text, encoding="utf-8")
        check_times = []
        for _ in range(5):
            started = time.perf_counter()
            check_text(text, str(path))
            check_times.append(time.perf_counter() - started)
        bench = Bench(path, text)
        await bench.start()
        try:
            print(f"file: {text.count(chr(10))} lines; debounce {DEBOUNCE_SECONDS * 1000:.0f} ms taken out below")
            latencies = [await bench.edit() - DEBOUNCE_SECONDS for _ in range(samples)]
            report("didChange -> publishDiagnostics", latencies, min(check_times))
            baseline = statistics.median([await bench.round_trip() for _ in range(samples)])
            if BROKEN in bench.text:
                await bench.edit()
            for label, needle, delta in (("completion after '.' (output.)", "output.confidence", 7),
                                         ("completion of a block key", "  k: 4", 2),
                                         ("completion of names in a flow", "  return summaries", 9)):
                times = [await bench.completion(needle, delta) for _ in range(samples)]
                report(label, times, baseline, TARGET_COMPLETION_P95)
            times = [await bench.semantic_tokens() for _ in range(samples)]
            report("semantic tokens of the whole file", times, baseline, TARGET_COMPLETION_P95)
            done = samples
            while done < 50:
                await bench.edit()
                done += 1
            early = resident_kb(bench.pid)
            while done < edits:
                await bench.edit()
                done += 1
            late = resident_kb(bench.pid)
            print(f"server memory after {done} edits: {late / 1024:.1f} MB, after 50: {early / 1024:.1f} MB, "
                  f"ratio {late / early:.3f} (target <= {TARGET_MEMORY_GROWTH:.2f})")
        finally:
            await bench.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--edits", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args(argv)
    asyncio.run(run(args.lines, args.edits, args.samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
