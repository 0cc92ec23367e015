"""The `fmflow` command: wiring only; every phase lives in its own module.

argparse rather than typer: `fmflow check` must start in well under 0.3 s,
and typer with rich costs about 90 ms of imports (see docs/architecture.md).
Exit status: 0 clean (warnings allowed), 1 errors, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Wrong arguments: printed as `fmflow: error: …`, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage and exits 2; keep that, say it our way
        self.print_usage(sys.stderr)
        print(f"fmflow: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _use_color(stream) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _flow_files(paths: list[str]) -> list[str]:
    """Files named on the command line; folders give every .fmflow file inside them."""
    files: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(str(p) for p in sorted(path.rglob("*.fmflow")))
        elif path.is_file():
            files.append(raw)
        else:
            raise UsageError(f"cannot read '{raw}': no such file or folder")
    if not files:
        raise UsageError("no .fmflow files found in " + ", ".join(paths))
    return files


def _parse_pins(pins: list[str]) -> dict[str, int]:
    parsed: dict[str, int] = {}
    for pin in pins or []:
        name, _, version = pin.partition("@")
        if not name.isidentifier() or not version.isdigit() or int(version) < 1:
            raise UsageError(f"--pin expects NAME@N (e.g. answer@2), got '{pin}'")
        parsed[name] = int(version)
    return parsed


def _print_diagnostics(diagnostics, sources, output_format: str = "text") -> None:
    from .diagnostics import render_json, render_text, summary

    if output_format == "json":
        print(render_json(diagnostics))
        return
    if diagnostics:
        print(render_text(diagnostics, sources, color=_use_color(sys.stdout)))
        print(summary(diagnostics), file=sys.stderr)


# ------------------------------------------------------------------ commands

def cmd_check(args) -> int:
    from .api import load_program

    pins = _parse_pins(args.pin)
    diagnostics, sources = [], {}
    seen: set[tuple] = set()
    for path in _flow_files(args.files):
        loader, ctx = load_program(path, pins=pins)
        if ctx is None:
            raise UsageError(f"cannot read '{path}'")
        sources.update(loader.sources())
        for d in loader.diagnostics():
            key = (d.code, d.span.path, d.span.start, d.message)
            if key not in seen:  # a file imported by two checked files is reported once
                seen.add(key)
                diagnostics.append(d)
    _print_diagnostics(diagnostics, sources, args.format)
    if args.format == "text" and not diagnostics:
        print("ok: no problems found", file=sys.stderr)
    return EXIT_ERRORS if any(d.is_error for d in diagnostics) else EXIT_OK


def cmd_fmt(args) -> int:
    from .diagnostics import Diagnostics
    from .formatter import format_module
    from .parser import parse_source
    from .source import SourceFile

    status = EXIT_OK
    changed: list[str] = []
    for path in _flow_files(args.files):
        source = SourceFile.read(path)
        diagnostics = Diagnostics()
        module = parse_source(source, diagnostics)
        if diagnostics.has_errors:
            _print_diagnostics(diagnostics.sorted(), {path: source})
            status = EXIT_ERRORS
            continue
        formatted = format_module(module)
        if formatted == source.text:
            continue
        changed.append(path)
        if not args.check:
            _write_atomically(path, formatted)
    for path in changed:
        print(f"{'would reformat' if args.check else 'reformatted'} {path}")
    if args.check and changed:
        status = EXIT_ERRORS
    return status


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.fmflow-tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def _checked(path: str, pins: dict[str, int] | None = None, allow: tuple[str, ...] = ()):
    """A checked file's context; prints diagnostics and returns None on errors."""
    from .api import load_program

    loader, ctx = load_program(path, pins=pins)
    if ctx is None:
        raise UsageError(f"cannot read '{path}'")
    diagnostics = loader.diagnostics()
    blocking = [d for d in diagnostics if d.is_error and d.code not in allow]
    if blocking:
        _print_diagnostics(diagnostics, loader.sources())
        return None
    return ctx


def cmd_graph(args) -> int:
    from . import ast
    from .compiler import build_flow_graph, to_dot, to_mermaid

    ctx = _checked(args.file)
    if ctx is None:
        return EXIT_ERRORS
    flows = [d for d in ctx.module.decls if isinstance(d, ast.FlowDecl)]
    flow = select_flow(flows, args.flow, args.file)
    declarations = {name: ctx.lookup(name) for name in ctx.symbols.names()}
    graph = build_flow_graph(flow, declarations)
    print(to_dot(graph) if args.format == "dot" else to_mermaid(graph))
    return EXIT_OK


def select_flow(flows, name: str | None, path: str):
    if name is not None:
        for flow in flows:
            if flow.name == name:
                return flow
        known = ", ".join(f.name for f in flows) or "none"
        raise UsageError(f"no flow '{name}' in {path} (flows: {known})")
    if len(flows) == 1:
        return flows[0]
    if not flows:
        raise UsageError(f"{path} declares no flow")
    raise UsageError(f"{path} declares several flows ({', '.join(f.name for f in flows)}); choose one with --flow")


def cmd_lock(args) -> int:
    from .lockfile import write_lock

    status = EXIT_OK
    for path in _flow_files(args.files):
        ctx = _checked(path, allow=("E401",))
        if ctx is None:
            status = EXIT_ERRORS
            continue
        lock, hashes = write_lock(ctx)
        print(f"locked {len(hashes)} prompt version{'s' if len(hashes) != 1 else ''} of {path} in {lock}")
    return status


def _load_flow_program(path: str, pins: dict[str, int] | None = None):
    """(Program, None) for a file without errors, else (None, exit status) after printing them."""
    from .runtime import Program

    ctx = _checked(path, pins=pins)
    if ctx is None:
        return None, EXIT_ERRORS
    return Program(ctx.loader, ctx), None


def _parse_model(spec: str | None) -> str | None:
    if spec is None:
        return None
    from .providers.base import split_model_spec

    if split_model_spec(spec) is None:
        raise UsageError(f"--model expects PROVIDER:NAME (e.g. ollama:llama3.2), got '{spec}'")
    return spec


def cmd_run(args) -> int:
    import asyncio
    import json

    from .runtime import RunOptions, check_inputs, run_flow_once
    from .runtime.errors import FlowRuntimeError
    from .runtime.inputs import InputError, parse_inputs
    from .runtime.outputs import OutputError

    if not os.path.isfile(args.file):
        raise UsageError(f"cannot read '{args.file}': no such file")
    model = _parse_model(args.model)
    program, status = _load_flow_program(args.file, _parse_pins(args.pin))
    if program is None:
        return status
    try:
        flow = program.flow(args.flow)
    except FlowRuntimeError as error:
        raise UsageError(error.cause) from None
    params = program.signature(flow)[0]
    try:
        inputs = parse_inputs(args.input, args.input_json, params)
        check_inputs(flow, params, inputs)
        for name, t in params:  # a value of the wrong type is the caller's mistake: exit 2, before any call
            program.types.validate(t, inputs[name])
    except InputError as error:
        raise UsageError(str(error)) from None
    except FlowRuntimeError as error:
        raise UsageError(error.cause) from None
    except OutputError as error:
        raise UsageError(f"input '{name}': {error.message}") from None
    progress = _Progress.start() if not args.json and sys.stderr.isatty() else None
    stream = _Stream(progress) if not args.json and sys.stdout.isatty() else None
    options = RunOptions(cache=not args.no_cache, model=model, on_event=progress.event if progress else None,
                         on_text=stream.write if stream else None)
    try:
        result = asyncio.run(run_flow_once(program, flow.name, inputs, options))
    except FlowRuntimeError as error:
        if progress:
            progress.stop()
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"fmflow: error: {error}", file=sys.stderr)
        return EXIT_ERRORS
    if progress:
        progress.stop()
    if args.json:
        print(json.dumps(result.data, ensure_ascii=False))
    elif stream is not None and stream.text and stream.text.strip() == str(result.data).strip():
        print()  # the answer is on the screen already
    elif isinstance(result.data, str):
        print(result.data)
    else:
        print(json.dumps(result.data, ensure_ascii=False, indent=2))
    if result.trace_path and not args.json:
        print(f"trace: {result.trace_path}", file=sys.stderr)
    return EXIT_OK


class _Stream:
    """Writes the final answer to the terminal as the model produces it."""

    def __init__(self, progress: "_Progress | None") -> None:
        self.progress = progress
        self.text = ""

    def write(self, piece: str) -> None:
        if self.progress is not None:  # the spinner and the text share the screen
            self.progress.stop()
            self.progress = None
        self.text += piece
        sys.stdout.write(piece)
        sys.stdout.flush()

    def restart(self) -> None:
        """The call failed part-way and is tried again: what was shown is not the answer."""
        if self.text:
            sys.stdout.write("\n")
            print("fmflow: the model's answer broke off; trying again", file=sys.stderr)
            self.text = ""


class _Progress:
    """A one-line live display of what is running, on a terminal only."""

    def __init__(self, status) -> None:
        self.status = status
        self.running: dict[str, int] = {}

    @classmethod
    def start(cls) -> "_Progress":
        from rich.console import Console

        status = Console(stderr=True).status("starting…")
        status.start()
        return cls(status)

    def event(self, kind: str, name: str, _line) -> None:
        if kind == "start":
            self.running[name] = self.running.get(name, 0) + 1
        elif self.running.get(name):
            self.running[name] -= 1
            if not self.running[name]:
                del self.running[name]
        shown = ", ".join(n for n in self.running if not n.startswith(("assign", "return", "branch")))
        self.status.update(f"running: {shown}" if shown else "running…")

    def stop(self) -> None:
        self.status.stop()


def cmd_test(args) -> int:
    import asyncio

    from .runtime.testing import run_tests

    passed = failed = 0
    for path in _flow_files(args.paths):
        program, status = _load_flow_program(path)
        if program is None:
            failed += 1
            continue
        outcomes = asyncio.run(run_tests(program))
        if not outcomes:
            continue
        print(path)
        for outcome in outcomes:
            mark = "PASS" if outcome.passed else "FAIL"
            print(f"  {mark} {outcome.name} ({outcome.duration_ms:.0f} ms)")
            if outcome.error:
                print(f"    error: {outcome.error}")
            for failure in outcome.failures:
                print("    " + failure.replace("\n", "\n    "))
            passed += outcome.passed
            failed += not outcome.passed
    print(f"{passed} passed, {failed} failed")
    return EXIT_ERRORS if failed else EXIT_OK


def cmd_trace_show(args) -> int:
    from .runtime.trace_view import TraceNotFound, find_run, read_trace, render_trace

    try:
        path = find_run(os.path.join(".fmflow", "runs"), args.run)
    except TraceNotFound as error:
        raise UsageError(str(error)) from None
    print(render_trace(read_trace(path)).rstrip())
    return EXIT_OK


def cmd_index(args) -> int:
    from .retrieval.embeddings import EmbeddingError
    from .retrieval.indexing import IndexingError, index_paths
    from .retrieval.store import StoreError

    bar = _IndexProgress.start() if sys.stderr.isatty() else None
    try:
        summary = index_paths(args.paths, args.collection, store=args.store, chunk_size=args.chunk_size,
                              chunk_overlap=args.chunk_overlap, prune=args.prune, embedding=args.embedding,
                              progress=bar.update if bar else None)
    except (IndexingError, StoreError) as error:
        raise UsageError(str(error)) from None
    except EmbeddingError as error:
        print(f"fmflow: error: {error}", file=sys.stderr)
        return EXIT_ERRORS
    finally:
        if bar:
            bar.stop()
    for path, reason in summary.skipped:
        print(f"fmflow: skipped {path}: {reason}", file=sys.stderr)
    if not summary.files:
        print(f"fmflow: error: nothing indexed into {args.collection}"
              + (f" ({summary.removed} chunks removed)" if summary.removed else ""), file=sys.stderr)
        return EXIT_ERRORS

    def count(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    print(f"indexed {count(summary.files, 'file')}, {count(summary.chunks, 'chunk')} ({summary.added} added, "
          f"{summary.updated} updated, {summary.removed} removed) in {summary.seconds:.1f} s into {args.collection}")
    return EXIT_OK


class _IndexProgress:
    """A progress bar over the files being indexed, on a terminal only."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.task = None

    @classmethod
    def start(cls) -> "_IndexProgress | None":
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        except ImportError:  # no bar without rich; indexing works the same
            return None

        progress = Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.description}"), console=Console(stderr=True), transient=True)
        progress.start()
        return cls(progress)

    def update(self, done: int, total: int, path: str | None) -> None:
        if self.task is None:
            self.task = self.progress.add_task("", total=total)
        self.progress.update(self.task, completed=done, total=total, description=path or "")

    def stop(self) -> None:
        self.progress.stop()


# --------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="fmflow", description="Declarative, checked, versioned foundation-model flows.")
    parser.add_argument("--version", action="version", version=f"fmflow {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    check = commands.add_parser("check", help="check flow files without running them")
    check.add_argument("files", nargs="+", metavar="FILE", help=".fmflow files or folders")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.add_argument("--pin", action="append", metavar="NAME@N", help="use prompt version N of NAME")
    check.set_defaults(handler=cmd_check)

    fmt = commands.add_parser("fmt", help="format flow files in place")
    fmt.add_argument("files", nargs="+", metavar="FILE")
    fmt.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    fmt.set_defaults(handler=cmd_fmt)

    graph = commands.add_parser("graph", help="print the dataflow graph of a flow")
    graph.add_argument("file", metavar="FILE")
    graph.add_argument("--flow", help="the flow to draw (needed when the file has several)")
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    graph.set_defaults(handler=cmd_graph)

    run = commands.add_parser("run", help="run a flow")
    run.add_argument("file", metavar="FILE")
    run.add_argument("--flow", help="the flow to run (needed when the file has several)")
    run.add_argument("-i", "--input", action="append", metavar="KEY=VALUE",
                     help="an input; KEY=@path reads the value from a file")
    run.add_argument("--input-json", metavar="JSON", help="all inputs as a JSON object (or @file)")
    run.add_argument("--json", action="store_true", help="print the result as JSON and nothing else")
    run.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    run.add_argument("--pin", action="append", metavar="NAME@N", help="use prompt version N of NAME")
    run.add_argument("--model", metavar="PROVIDER:NAME",
                     help="the model of prompts that name none (when no model is declared as `default`)")
    run.set_defaults(handler=cmd_run)

    test = commands.add_parser("test", help="run the test blocks of flow files")
    test.add_argument("paths", nargs="+", metavar="FILE|DIR")
    test.set_defaults(handler=cmd_test)

    trace = commands.add_parser("trace", help="inspect run traces")
    trace_commands = trace.add_subparsers(dest="trace_command", metavar="show", parser_class=_Parser,
                                          required=True)
    show = trace_commands.add_parser("show", help="print a run as a tree with timings")
    show.add_argument("run", nargs="?", default="last", metavar="RUN", help="run id, prefix, path or 'last'")
    show.set_defaults(handler=cmd_trace_show)

    lock = commands.add_parser("lock", help="record prompt versions in fmflow.lock")
    lock.add_argument("files", nargs="+", metavar="FILE")
    lock.set_defaults(handler=cmd_lock)
    index = commands.add_parser("index", help="split documents into chunks and store them in a collection")
    index.add_argument("paths", nargs="+", metavar="PATH", help=".md .txt .rst .html .pdf files or folders")
    index.add_argument("--collection", required=True, metavar="NAME", help="the collection to fill")
    index.add_argument("--store", default=os.path.join(".fmflow", "store"), metavar="DIR",
                       help="the store folder (default .fmflow/store)")
    index.add_argument("--chunk-size", type=int, default=1000, metavar="N", help="characters per chunk at most")
    index.add_argument("--chunk-overlap", type=int, default=150, metavar="N",
                       help="characters a chunk repeats from the end of the previous one")
    index.add_argument("--prune", action="store_true",
                       help="remove chunks of files that are gone or not among the PATHs")
    index.add_argument("--embedding", default="builtin:minilm", metavar="SPEC",
                       help="the embedding model (default builtin:minilm)")
    index.set_defaults(handler=cmd_index)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"fmflow: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fmflow: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fmflow graph … | head`: the reader left, nothing is wrong
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK
    except OSError as error:
        print(f"fmflow: error: {error.strerror or error}: {getattr(error, 'filename', '') or ''}".rstrip(": "),
              file=sys.stderr)
        return EXIT_ERRORS
    except Exception as error:  # an fmflow bug: say so plainly, traceback only on request
        if args.debug or os.environ.get("FMFLOW_DEBUG"):
            raise
        print(f"fmflow: internal error: {type(error).__name__}: {error}\n"
              "  run again with --debug for a traceback, and please report it", file=sys.stderr)
        return EXIT_ERRORS


def run() -> None:
    sys.exit(main())
