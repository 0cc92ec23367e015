"""`fmflow run` and `fmflow test`: the commands that run flows."""

from __future__ import annotations

import contextlib
import sys

from .common import (EXIT_ERRORS, EXIT_OK, UsageError, add_budget_option, add_run_options, check_model_names,
                     flow_files, load_flow_program, load_flow_programs, max_depth, parse_model, parse_pins,
                     require_regular_file, result_only_on_stdout)


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


def cmd_run(args) -> int:
    from ..runtime import RunOptions, run_flow_once, run_interruptibly
    from ..runtime.budget import Budget
    from ..runtime.errors import FlowRuntimeError

    require_regular_file(args.file)
    model = parse_model(args.model)
    depth = max_depth(args)
    # Under --json stdout holds the result and nothing else: diagnostics go to stderr.
    program, status = load_flow_program(args.file, parse_pins(args.pin),
                                        diagnostics_to=sys.stderr if args.json else None)
    if program is None:
        return status
    check_model_names(model, [program])
    try:
        flow = program.flow(args.flow)
    except FlowRuntimeError as error:
        raise UsageError(error.cause) from None
    inputs = call_inputs(program, flow, args)
    progress = _Progress.start() if not args.json and sys.stderr.isatty() else None
    stream = _Stream(progress) if not args.json and sys.stdout.isatty() else None
    budget = Budget(args.budget) if args.budget is not None else None
    options = RunOptions(cache=not args.no_cache, model=model.default, models=model.overrides or None,
                         on_event=progress.event if progress else None, on_text=stream.write if stream else None,
                         budget=budget, **depth)
    try:
        # Under --json a tool's prints go to stderr while the flow runs; the result is printed after.
        with result_only_on_stdout() if args.json else contextlib.nullcontext():
            result = run_interruptibly(run_flow_once(program, flow.name, inputs, options))
    except KeyboardInterrupt:  # the run was cancelled and its trace closed as "interrupted"
        if progress:
            progress.stop()
        print("fmflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
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
    data = result.secrets.mask_data(result.data)  # the run's secrets are not shown either
    _print_result(data, args.json, stream)
    if result.trace_path and not args.json:
        print(f"trace: {result.trace_path}", file=sys.stderr)
    if budget is not None:
        print(f"budget: {budget.describe()}", file=sys.stderr)
    return EXIT_OK


def call_inputs(program, decl, args) -> dict:
    """The inputs of a flow (or a prompt, for `fmflow render`) from -i and --input-json, each strictly of
    its type; a usage error if not."""
    from ..runtime import check_input_values, check_inputs
    from ..runtime.errors import FlowRuntimeError
    from ..runtime.inputs import InputError, parse_inputs

    params = program.signature(decl)[0]
    owner = "the flow" if decl.kind == "flow" else f"{decl.kind} '{decl.name}'"
    try:
        inputs = parse_inputs(args.input, args.input_json, params, owner)
        check_inputs(decl, params, inputs)  # a wrong input is the caller's mistake: exit 2, before any call
        check_input_values(program, decl, params, inputs)
    except InputError as error:
        raise UsageError(str(error)) from None
    except FlowRuntimeError as error:
        raise UsageError(error.cause) from None
    return inputs


def _print_result(data, as_json: bool, stream: "_Stream | None") -> None:
    """A `str` result as text, anything else (and everything under --json) as valid JSON."""
    if not as_json and stream is not None and stream.text and stream.text.strip() == str(data).strip():
        print()  # the answer is on the screen already
    elif not as_json and isinstance(data, str):
        print(data)
    else:
        print(json_text(data, indent=None if as_json else 2))


def json_text(data, indent: int | None = None) -> str:
    """``data`` as strict JSON that stdout can carry.

    NaN and ±Infinity have no JSON form: they are written as null, with a
    warning on stderr naming where they were. Text that stdout's encoding
    cannot hold (lone surrogates, a non-UTF-8 locale) is written as \\u escapes.
    """
    import json

    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, indent=indent)
    except ValueError:
        places: list[str] = []
        data = _finite(data, "$", places)
        print(f"fmflow: warning: JSON has no NaN or Infinity; written as null at {', '.join(places)}",
              file=sys.stderr)
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, indent=indent)
    try:
        text.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        text = json.dumps(data, ensure_ascii=True, allow_nan=False, indent=indent)
    return text


def _finite(data, path: str, places: list[str]):
    """``data`` with every non-finite float replaced by None; ``places`` gets their JSON paths."""
    import math

    if isinstance(data, float) and not math.isfinite(data):
        places.append(f"{path} ({data})")
        return None
    if isinstance(data, dict):
        return {k: _finite(v, f"{path}.{k}", places) for k, v in data.items()}
    if isinstance(data, list):
        return [_finite(v, f"{path}[{i}]", places) for i, v in enumerate(data)]
    return data


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
    from ..runtime import RunOptions, in_own_loop, run_interruptibly
    from ..runtime.testing import run_tests

    model, depth, pins = parse_model(args.model), max_depth(args), parse_pins(args.pin)
    paths = flow_files(args.paths)
    names = set(args.name) if args.name else None
    if names is not None:
        paths = _files_with_tests(paths, args.name, args.paths)
    programs = load_flow_programs(paths, pins)
    check_model_names(model, [p for p in programs if p is not None])
    options = RunOptions(cache=False, trace=False, model=model.default, models=model.overrides or None, **depth)
    passed = failed = 0
    for path, program in zip(paths, programs):
        if program is None:
            failed += 1
            continue
        # Ctrl-C: `main` says "interrupted", exit 130
        report = run_interruptibly(in_own_loop(run_tests(program, options, record=args.record, names=names)))
        if report.cassette is not None:
            print(f"recorded {report.recorded} repl{'y' if report.recorded == 1 else 'ies'} in {report.cassette}"
                  if report.recorded else f"nothing to record for {path}", file=sys.stderr)
        if not report.outcomes:
            continue
        print(path)
        for outcome in report.outcomes:
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


def _files_with_tests(paths: list[str], names: list[str], given: list[str]) -> list[str]:
    """The files that declare a test ``--name`` selects; a name no file declares is a usage error naming the
    tests there (and the files whose syntax errors may hide a test)."""
    from .. import ast
    from ..diagnostics import Diagnostics, unknown_test_problems
    from ..parser import parse_file
    from ..source import SourceError

    declared: dict[str, list[str]] = {}
    broken: list[str] = []
    for path in paths:
        try:
            _source, module = parse_file(path, Diagnostics())
        except SourceError as error:
            raise UsageError(str(error)) from None
        declared[path] = [d.name for d in module.decls if isinstance(d, ast.TestDecl)]
        if module.recovered:
            broken.append(path)
    known = list(dict.fromkeys(n for found in declared.values() for n in found))
    where = paths[0] if len(paths) == 1 else f"{', '.join(given)} ({len(paths)} files)"
    listed = f"tests: {', '.join(known)}" if known else ("it declares no test" if len(paths) == 1
                                                          else "they declare no test")
    hidden = f" (syntax errors in {', '.join(broken)} may hide tests)" if broken else ""
    problems = unknown_test_problems(names, known, where, listed, hidden)
    if problems:
        raise UsageError("\n  ".join(problems))
    return [p for p in paths if set(declared[p]) & set(names)]


def add_commands(commands) -> None:
    run = commands.add_parser("run", help="run a flow")
    run.add_argument("file", metavar="FILE")
    run.add_argument("--flow", help="the flow to run (needed when the file has several)")
    run.add_argument("-i", "--input", action="append", metavar="KEY=VALUE",
                     help="an input; KEY=@path reads the value from a file")
    run.add_argument("--input-json", metavar="JSON", help="all inputs as a JSON object (or @file)")
    run.add_argument("--json", action="store_true", help="print the result as JSON and nothing else")
    run.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    add_run_options(run)
    add_budget_option(run)
    run.set_defaults(handler=cmd_run)

    test = commands.add_parser("test", help="run the test blocks of flow files")
    test.add_argument("paths", nargs="+", metavar="FILE|DIR")
    test.add_argument("--name", action="append", metavar="TEST",
                      help="run only the test called TEST (repeatable; across every file given)")
    test.add_argument("--record", action="store_true",
                      help="ask the real models what no mock or script answers, and record their replies in "
                           "FILE.cassette.jsonl beside each file (later runs replay them)")
    add_run_options(test)
    test.set_defaults(handler=cmd_test)
