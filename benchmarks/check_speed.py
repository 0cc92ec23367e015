"""How fast fmflow parses and checks, and how fast `fmflow check` starts.

    python benchmarks/check_speed.py [--sizes 1000,10000,100000] [--runs 5]

Generates synthetic but valid .fmflow sources of about 1k, 10k and 100k
lines (models, types, enums, prompts with block-string templates that use
only their parameters, retrievers, tools, filters, flows with assignments,
if/elif, comprehensions and pipes; every declaration is used), then prints

- lines/second for parse only (``fmflow.parser.parse_text``; also with the
  cyclic garbage collector off, to show its share) and for
  parse + check (``fmflow.api.check_text``, also its CPU time, steadier on
  a busy machine), asserting the source checks clean (no diagnostic whose
  code starts with "E"); target: 10k lines parsed and checked in < 0.5 s;
- the start-up time of ``python -m fmflow check FILE`` on a small file,
  median of N fresh processes (wall and CPU time), beside the interpreter's
  own start-up (``python -c pass``) measured in the same run, and their
  ratio; with compiled bytecode, as an installed package has it (and, where
  PYTHONDONTWRITEBYTECODE is set, also compiled from source at every start);
- whether torch, transformers or chromadb were imported during a check
  (``python -X importtime``);
- ``fmflow fmt`` time per declaration on 50,000 small declarations against
  5,000 measured in the same run (linear: the ratio stays near 1);
- the peak memory of ``fmflow check`` on a file holding a 5 MB string
  literal (and a 5 MB block-string template) beyond that of a small file,
  as a multiple of the literal's size (fresh processes, their own VmHWM).

Timings are printed beside their targets, never asserted: they depend on the
machine. Finishes in about two minutes on two cores.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HEAVY_MODULES = ("torch", "transformers", "chromadb", "fastapi", "uvicorn", "prometheus_client")
TARGET_CHECK_10K_SECONDS = 0.5
TARGET_COLD_CHECK_SECONDS = 0.3
TARGET_FMT_GROWTH = 2.0  # fmt time per declaration at 50k within 2x of that at 5k
TARGET_LITERAL_MEMORY = 10.0  # extra peak memory for a 5 MB literal within 10x its size
# A tag-dense template (a {{ x }} every 60 characters): Jinja2's own tree of it is
# about 7x the text, and its parser peaks near 10x; fmflow adds the text's few copies.
TARGET_TEMPLATE_MEMORY = 20.0
FMT_COUNTS = (5_000, 50_000)
LITERAL_BYTES = 5 * 1024 * 1024

# --------------------------------------------------------------- generator

HEADER = '''\
# Synthetic fmflow source for benchmarks/check_speed.py: valid, every declaration used.
'''

# One unit: every kind of declaration, each used by the unit's flows. The
# templates use only their prompt's parameters (E202), and every flow path
# returns (E203). ``{i}`` makes the names unique.
UNIT = '''
model fast_{i} {{
  provider: "openai"
  name: "gpt-4o-mini"
  temperature: 0.2
  max_tokens: 512
  timeout: 30s
  retry: 3
  rate: 60/min
  concurrency: 8
}}

enum Level_{i} {{ low, medium, high }}

type Report_{i} {{
  text: str
  level: Level_{i}
  citations: list[str]
  confidence: float
  note: str?
}}

retriever kb_{i} {{
  collection: "docs_{i}"
  k: 4
  min_score: 0.25
  where: {{ lang: "en", part: "{i}" }}
}}

tool word_count_{i}(text: str) -> int = python("bench_tools:word_count")
filter tidy_{i}(text: str, limit: int) -> str = python("bench_tools:tidy")

prompt summarize_{i}@2 (passage: str, limit: int) -> str {{
  model: fast_{i}
  system: """You summarise passages faithfully."""
  template: """
    Summarise the passage below in at most {{{{ limit }}}} words.
    {{% if limit > 100 %}}Keep every number.{{% endif %}}
    Passage: {{{{ passage }}}}
  """
}}

prompt report_{i}(question: str, notes: list[str]) -> Report_{i} {{
  model: fast_{i}
  system: """You write short reports with citations."""
  template: """
    {{% for n in notes %}}- {{{{ n }}}}
    {{% endfor %}}
    Question: {{{{ question }}}}
  """
  check: [len(output.citations) >= 0, output.confidence <= 1.0]
  on_fail: reask(2)
}}

flow digest_{i}(question: str) -> list[str] {{
  docs = kb_{i}(question)
  texts = [d.text | tidy_{i}(400) for d in docs if d.score > 0.3]
  summaries = [summarize_{i}(passage: t, limit: 60) for t in texts]
  return summaries
}}

flow answer_{i}(question: str, depth: int) -> Report_{i} {{
  size = word_count_{i}(question)
  if size == 0 {{
    return Report_{i}(text: "empty question", level: Level_{i}.low, citations: [], confidence: 0.0, note: null)
  }} elif depth > 2 {{
    notes = digest_{i}(question)
  }} else {{
    notes = [question | tidy_{i}(200)]
  }}
  result = report_{i}(question: question, notes: notes)
  return result
}}
'''

UNIT_LINES = UNIT.count("\n")


def generate_source(target_lines: int) -> str:
    """A valid source of at least ``target_lines`` lines (whole units)."""
    units = max(1, round(target_lines / UNIT_LINES))
    return HEADER + "".join(UNIT.format(i=i) for i in range(units))


def line_count(text: str) -> int:
    return text.count("\n") + (0 if text.endswith("\n") else 1)


# ---------------------------------------------------------------- timing

def best_time(function: Callable[[], object], budget: float = 1.0, max_runs: int = 5) -> float:
    """Best of a few runs: at least one, more while they fit in ``budget`` seconds."""
    return best_times(function, budget, max_runs)[0]


def best_times(function: Callable[[], object], budget: float = 1.0, max_runs: int = 5) -> tuple[float, float]:
    """Best wall-clock and best CPU time (this process) of a few runs; on a busy
    machine the CPU time says more about the code."""
    times: list[float] = []
    cpu_times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_runs:
        t0, c0 = time.perf_counter(), time.process_time()
        function()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        if time.perf_counter() - started > budget:
            break
    return min(times), min(cpu_times)


def without_gc(function: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function()
        finally:
            if enabled:
                gc.enable()
    return run


def parse_only(text: str, path: str) -> None:
    from fmflow.parser import parse_text

    _module, diagnostics = parse_text(text, path)
    errors = [d for d in diagnostics if d.code.startswith("E")]
    assert not errors, f"generated source has syntax errors: {errors[:3]}"


def load_check_text() -> Callable[[str, str], list] | None:
    try:
        from fmflow.api import check_text
    except ImportError as error:
        print(f"  (parse + check skipped: fmflow.api.check_text is not available: {error})")
        return None
    return check_text


def parse_and_check(check_text: Callable[[str, str], list], text: str, path: str) -> None:
    diagnostics = check_text(text, path)
    errors = [d for d in diagnostics if d.code.startswith("E")]
    assert not errors, "generated source does not check clean:\n" + "\n".join(
        f"  {d.code} {d.span.line}:{d.span.col} {d.message}" for d in errors[:10])


def throughput_table(sizes: list[int]) -> None:
    print("throughput (best of up to 5 runs; lines/second)")
    from fmflow.parser import parse_text

    parse_text(generate_source(100), "warmup.fmflow")  # build the cached Lark parser once
    check_text = load_check_text()
    if check_text is not None:
        parse_and_check(check_text, generate_source(100), "warmup.fmflow")
    print(f"  {'lines':>8}  {'parse s':>8}  {'parse l/s':>10}  {'no-gc l/s':>10}  {'check s':>8}  {'check l/s':>10}"
          f"  {'check cpu s':>11}")
    for size in sizes:
        text = generate_source(size)
        lines = line_count(text)
        path = f"bench_{size}.fmflow"
        parse_seconds = best_time(lambda: parse_only(text, path))
        # The same parse with the cyclic garbage collector off: how much of the
        # time (and of any growth with size) is collector overhead.
        no_gc_seconds = best_time(without_gc(lambda: parse_only(text, path)))
        row = f"  {lines:>8}  {parse_seconds:>8.3f}  {lines / parse_seconds:>10,.0f}  {lines / no_gc_seconds:>10,.0f}"
        if check_text is not None:
            # Five runs for every size that allows it (an editor checks the same file again and
            # again); the first, with the process's caches cold, is printed too.
            first = time.perf_counter()
            parse_and_check(check_text, text, path)
            first = time.perf_counter() - first
            check_seconds, check_cpu = best_times(lambda: parse_and_check(check_text, text, path), budget=3.0)
            check_seconds = min(check_seconds, first)
            row += f"  {check_seconds:>8.3f}  {lines / check_seconds:>10,.0f}  {check_cpu:>11.3f}  (first {first:.3f} s)"
            if 5_000 <= size <= 20_000:
                per_10k = check_seconds * 10_000 / lines
                verdict = "ok" if per_10k < TARGET_CHECK_10K_SECONDS else "MISSED"
                row += f"   target: 10k lines checked < {TARGET_CHECK_10K_SECONDS:g} s " \
                       f"({per_10k:.2f} s per 10k: {verdict})"
        print(row, flush=True)


# --------------------------------------------------------------- start-up

def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def bytecode_env(cache: Path) -> dict[str, str]:
    """Python writes and reads compiled bytecode (in ``cache``), as it does for an installed package,
    even where PYTHONDONTWRITEBYTECODE is set (then every start compiles fmflow from source)."""
    env = subprocess_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def timed_run(argv: list[str], cwd: Path, env: dict[str, str] | None = None
              ) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    process = subprocess.run(argv, cwd=cwd, env=env or subprocess_env(), capture_output=True, text=True)
    return time.perf_counter() - t0, process


def children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_start(argv: list[str], cwd: Path, runs: int, env: dict[str, str] | None = None
                 ) -> tuple[float, float, subprocess.CompletedProcess]:
    """Median wall and CPU seconds of ``runs`` fresh processes, and the last one."""
    _, last = timed_run(argv, cwd, env)  # untimed: writes .pyc files and the parser's table cache
    walls, cpus = [], []
    for _ in range(runs):
        cpu = children_cpu()
        seconds, last = timed_run(argv, cwd, env)
        walls.append(seconds)
        cpus.append(children_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus), last


def startup_report(workdir: Path, runs: int) -> None:
    small = workdir / "small.fmflow"
    small.write_text(generate_source(60), encoding="utf-8")
    print(f"\nstart-up (median of {runs} fresh processes, {line_count(small.read_text())}-line file, "
          f"load average {os.getloadavg()[0]:.2f})")
    if not (ROOT / "fmflow" / "__main__.py").exists():
        print("  (skipped: fmflow/__main__.py does not exist yet)")
        return
    env = bytecode_env(workdir / "pycache")
    baseline, baseline_cpu, _ = median_start([sys.executable, "-c", "pass"], workdir, runs, env)
    check_argv = [sys.executable, "-m", "fmflow", "check", str(small)]
    check, check_cpu, process = median_start(check_argv, workdir, runs, env)
    print(f"  baseline  python -c pass          {baseline * 1000:7.1f} ms   cpu {baseline_cpu * 1000:6.1f} ms")
    verdict = "ok" if check < TARGET_COLD_CHECK_SECONDS else "MISSED"
    print(f"  fmflow    python -m fmflow check  {check * 1000:7.1f} ms   cpu {check_cpu * 1000:6.1f} ms   "
          f"target < {TARGET_COLD_CHECK_SECONDS * 1000:.0f} ms: {verdict}")
    print(f"  ratio     fmflow check / python   {check / baseline:7.1f} x       cpu {check_cpu / baseline_cpu:6.1f} x")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        source, source_cpu, _ = median_start(check_argv, workdir, runs)
        print(f"  as set here (PYTHONDONTWRITEBYTECODE: no bytecode written; fmflow compiles from source "
              f"unless a __pycache__ already holds it)\n"
              f"            python -m fmflow check  {source * 1000:7.1f} ms   cpu {source_cpu * 1000:6.1f} ms   "
              f"{source / baseline:.1f} x python")
    if process.returncode != 0:
        print(f"  warning: `fmflow check` exited {process.returncode} on a clean file:")
        print("    " + (process.stdout + process.stderr).strip().replace("\n", "\n    ")[:2000])
    heavy_imports_report(small, workdir)


def imported_top_level(importtime_stderr: str) -> set[str]:
    """Top-level package names from ``-X importtime`` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") < 2:
            continue
        module = line.rsplit("|", 1)[1].strip()
        if module and module != "imported package":
            names.add(module.split(".")[0])
    return names


def heavy_imports_report(small: Path, workdir: Path) -> None:
    _, process = timed_run([sys.executable, "-X", "importtime", "-m", "fmflow", "check", str(small)], workdir)
    imported = imported_top_level(process.stderr)
    if not imported:
        print("  heavy imports: could not read -X importtime output")
        return
    heavy = [m for m in HEAVY_MODULES if m in imported]
    if heavy:
        print(f"  heavy imports during check: {', '.join(heavy)}   target: none: MISSED")
    else:
        print(f"  heavy imports during check: none ({', '.join(HEAVY_MODULES)} not imported)   target: none: ok")


# ------------------------------------------------------------ scale

def small_declarations(count: int) -> str:
    """``count`` one-line declarations of five kinds, with own-line and trailing comments."""
    kinds = (
        '# model {i}\nmodel m{i} {{ provider: "openai", name: "x", temperature: 0.2 }}  # trailing',
        "enum E{i} {{ a, b, c }}",
        "type T{i} {{ a: str, b: int?, c: list[E{i}] }}",
        'flow f{i}(x: str) -> str {{ return x + "{i}" }}',
        'tool t{i}(x: str) -> int = python("bench_tools:word_count")',
    )
    return "\n".join(kinds[i % len(kinds)].format(i=i) for i in range(count)) + "\n"


def fmt_scaling() -> None:
    from fmflow.formatter import format_module
    from fmflow.parser import parse_text

    print("\nfmt scaling (best of up to 3 runs; format_module on parsed declarations)")
    per_declaration = {}
    for count in FMT_COUNTS:
        module, diagnostics = parse_text(small_declarations(count), f"decls_{count}.fmflow")
        assert not diagnostics, diagnostics[:3]
        seconds = best_time(lambda: format_module(module), budget=2.0, max_runs=3)
        per_declaration[count] = seconds / count
        print(f"  {count:>8} declarations  {seconds:7.2f} s  {seconds / count * 1e6:7.1f} µs each")
    small, large = FMT_COUNTS
    ratio = per_declaration[large] / per_declaration[small]
    verdict = "ok" if ratio < TARGET_FMT_GROWTH else "MISSED"
    print(f"  ratio     per declaration {large:,} / {small:,}  {ratio:5.2f} x   "
          f"target < {TARGET_FMT_GROWTH:.0f} x (linear): {verdict}")


_PEAK_DRIVER = """
import runpy, sys
sys.argv = ["fmflow", *sys.argv[1:]]
try:
    runpy.run_module("fmflow", run_name="__main__")
except SystemExit:
    pass
try:  # Linux: the high-water mark of this process's own memory (ru_maxrss would count the parent's too)
    peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
except OSError:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
print(peak, file=sys.stderr)
"""


def peak_memory_kb(args: list[str], cwd: Path) -> int:
    """Peak resident memory (KB) of one fresh process running ``fmflow ARGS``."""
    process = subprocess.run([sys.executable, "-c", _PEAK_DRIVER, *args], cwd=cwd, env=subprocess_env(),
                             capture_output=True, text=True)
    return int(process.stderr.strip().splitlines()[-1])


def literal_memory(workdir: Path) -> None:
    body = ("abcdefghi " * (LITERAL_BYTES // 10))[:LITERAL_BYTES]
    cases = {  # name: (text, target)
        "small file": (generate_source(60), None),
        "5 MB string literal": (f'flow f(x: str) -> str {{\n  return x + "{body}"\n}}\n', TARGET_LITERAL_MEMORY),
        "5 MB block-string template": (
            'prompt p(x: str) -> str {\n  template: """\n'
            + "".join(f"    {body[i:i + 60]} {{{{ x }}}}\n" for i in range(0, LITERAL_BYTES, 60))
            + '  """\n}\n\nflow f(x: str) -> str {\n  return p(x)\n}\n', TARGET_TEMPLATE_MEMORY),
    }
    print("\nmemory of `fmflow check` (peak resident memory of a fresh process)")
    peaks = {}
    for name, (text, _target) in cases.items():
        path = workdir / (name.replace(" ", "_") + ".fmflow")
        path.write_text(text, encoding="utf-8")
        peaks[name] = peak_memory_kb(["check", str(path)], workdir)
    baseline = peaks["small file"]
    print(f"  baseline  small file                  {baseline / 1024:7.1f} MB")
    for name, peak in list(peaks.items())[1:]:
        extra, target = max(0, peak - baseline) * 1024 / LITERAL_BYTES, cases[name][1]
        verdict = "ok" if extra < target else "MISSED"
        print(f"  {name:<36}  {peak / 1024:7.1f} MB   extra / literal size {extra:5.1f} x   "
              f"target < {target:.0f} x: {verdict}")


# ------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="approximate line counts")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per start-up figure")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    started = time.perf_counter()
    print(f"fmflow check_speed: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, unit = {UNIT_LINES} lines")
    throughput_table(sizes)
    with tempfile.TemporaryDirectory(prefix="fmflow-bench-") as tmp:
        startup_report(Path(tmp), args.runs)
        fmt_scaling()
        literal_memory(Path(tmp))
    print(f"\ntotal benchmark time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
