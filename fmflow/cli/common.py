"""What every command shares: exit codes, usage errors, reading flow files, printing diagnostics."""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Wrong arguments: printed as `fmflow: error: …`, exit status 2."""


class CommandParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage and exits 2; keep that, say it our way
        self.print_usage(sys.stderr)
        print(f"fmflow: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def use_color(stream) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def flow_files(paths: list[str]) -> list[str]:
    """Files named on the command line; a folder gives the flow files found inside it.

    Inside a folder only regular files named ``*.fmflow`` count (not links,
    pipes or devices), and hidden folders and files are skipped: fmflow's
    own ``.fmflow/`` state folder (runs, cache, store), ``.git``, ``.venv``….
    A file named on the command line is taken as given; reading it checks it.
    """
    files: list[str] = []
    for raw in paths:
        if os.path.isdir(raw):
            files.extend(_flows_in_folder(raw))
        elif os.path.lexists(raw):
            files.append(raw)
        else:
            raise UsageError(f"cannot read '{raw}': no such file or folder")
    if not files:
        raise UsageError("no .fmflow files found in " + ", ".join(paths))
    return files


def _flows_in_folder(top: str) -> list[str]:
    from ..source import SUFFIX

    found: list[str] = []
    for folder, subfolders, names in os.walk(top):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(names):
            path = os.path.normpath(os.path.join(folder, name))
            if name.endswith(SUFFIX) and not name.startswith(".") and _is_regular_file(path):
                found.append(path)
    return found


def _is_regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def parse_pins(pins: list[str]) -> dict[str, int]:
    parsed: dict[str, int] = {}
    for pin in pins or []:
        name, _, version = pin.partition("@")
        if not name.isidentifier() or not version.isdigit() or int(version) < 1:
            raise UsageError(f"--pin expects NAME@N (e.g. answer@2), got '{pin}'")
        parsed[name] = int(version)
    return parsed


def print_diagnostics(diagnostics, sources, output_format: str = "text", file=None) -> None:
    """Diagnostics on stdout (``check``'s output), or on ``file`` for commands whose stdout is a result."""
    from ..diagnostics import render_json, render_text, summary

    out = file or sys.stdout
    if output_format == "json":
        print(render_json(diagnostics), file=out)
        return
    if diagnostics:
        print(render_text(diagnostics, sources, color=use_color(out)), file=out)
        print(summary(diagnostics), file=sys.stderr)


# ------------------------------------------------------------------ commands


def load_checked(path: str, pins: dict[str, int] | None = None, check_pins: bool = True):
    """(loader, context) of a checked file; a file that cannot be read is a usage error, and so is a
    `--pin` that names no prompt version (``check_pins=False``: the caller checks them over several files)."""
    from ..api import load_program
    from ..source import SourceError

    try:
        loader, ctx = load_program(path, pins=pins)
    except SourceError as error:
        raise UsageError(str(error)) from None
    if pins and check_pins:
        checked_pins([loader], pins)
    return loader, ctx


def checked_pins(loaders, pins: dict[str, int]) -> None:
    """A usage error for each `--pin` that cannot apply; a warning where one changes nothing."""
    from ..checks.pins import pin_notes, pin_problems

    contexts = list({id(c): c for loader in loaders for c in loader.contexts.values()}.values())
    problems = pin_problems(contexts, pins)
    if problems:
        raise UsageError("\n  ".join(problems))
    for note in dict.fromkeys(pin_notes(contexts, pins)):
        print(f"fmflow: warning: {note}", file=sys.stderr)


def checked(path: str, pins: dict[str, int] | None = None, allow: tuple[str, ...] = (), diagnostics_to=None):
    """A checked file's context; prints diagnostics (on stdout, or ``diagnostics_to``) and returns None on errors."""
    return _without_errors(*load_checked(path, pins), allow, diagnostics_to)


def _without_errors(loader, ctx, allow: tuple[str, ...] = (), diagnostics_to=None):
    diagnostics = loader.diagnostics()
    blocking = [d for d in diagnostics if d.is_error and d.code not in allow]
    if blocking:
        print_diagnostics(diagnostics, loader.sources(), file=diagnostics_to)
        return None
    return ctx


def select_flow(flows, name: str | None, path: str, kind: str = "flow"):
    """The flow (or pipeline, with ``kind``) called ``name``, or the only one."""
    option = "--flow" if kind == "flow" else f"--{kind}"
    if name is not None:
        for flow in flows:
            if flow.name == name:
                return flow
        known = ", ".join(f.name for f in flows) or "none"
        raise UsageError(f"no {kind} '{name}' in {path} ({kind}s: {known})")
    if len(flows) == 1:
        return flows[0]
    if not flows:
        raise UsageError(f"{path} declares no {kind}")
    raise UsageError(f"{path} declares several {kind}s ({', '.join(f.name for f in flows)}); "
                     f"choose one with {option}")


def require_regular_file(path: str) -> None:
    """A usage error naming what is wrong with a file given on the command line (missing, a folder, a FIFO…)."""
    from ..files import not_a_regular_file

    reason = not_a_regular_file(path)
    if reason is not None:
        raise UsageError(f"cannot read '{path}': {reason}")


def load_flow_programs(paths: list[str], pins: dict[str, int] | None = None) -> list:
    """The Program of each file, or None for a file with errors (printed); `--pin`s are checked
    against all the files together, before any diagnostic is shown."""
    from ..runtime import Program

    loaded = [load_checked(path, pins, check_pins=False) for path in paths]
    if pins:
        checked_pins([loader for loader, _ctx in loaded], pins)
    contexts = [_without_errors(loader, ctx) for loader, ctx in loaded]
    return [Program(ctx.loader, ctx) if ctx is not None else None for ctx in contexts]


def load_flow_program(path: str, pins: dict[str, int] | None = None, diagnostics_to=None):
    """(Program, None) for a file without errors, else (None, exit status) after printing them."""
    from ..runtime import Program

    ctx = checked(path, pins=pins, diagnostics_to=diagnostics_to)
    if ctx is None:
        return None, EXIT_ERRORS
    return Program(ctx.loader, ctx), None


def parse_model(specs: list[str] | None):
    """The run's ModelChoice from `--model PROVIDER:NAME` and `--model NAME=PROVIDER:MODEL` (repeatable)."""
    from ..runtime.models import ModelChoiceError, parse_model_choices

    try:
        return parse_model_choices(specs)
    except ModelChoiceError as error:
        raise UsageError(str(error)) from None


def budget_usd(text: str) -> float:
    """``--budget USD``: a number of dollars, 0 or more (``0.50`` or ``$0.50``)."""
    import math

    try:
        value = float(text.strip().lstrip("$"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a budget is a number of USD (e.g. 0.50), not '{text}'") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"a budget is 0 USD or more, not '{text}'")
    return value


def add_budget_option(parser) -> None:
    """``--budget USD``, the same on every command that runs model calls (LANGUAGE.md §10)."""
    parser.add_argument("--budget", type=budget_usd, metavar="USD",
                        help="stop starting model calls once their cost would pass USD (estimated from the "
                             "prompt and max_tokens at the models' prices)")


def check_model_names(choice, programs) -> None:
    """A usage error when a `--model NAME=…` names no declared model in any of ``programs``."""
    from ..runtime.models import unknown_model_names

    for name in choice.overrides:
        problems = [unknown_model_names(p, {name: choice.overrides[name]}) for p in programs]
        if problems and all(problems):
            raise UsageError(problems[0])


def add_run_options(parser, pin: bool = True, depth: bool = True) -> None:
    """The options every command that runs flows takes: `--pin`, `--model`, `--max-depth`."""
    if pin:
        parser.add_argument("--pin", action="append", metavar="NAME@N", help="use prompt version N of NAME")
    parser.add_argument("--model", action="append", metavar="PROVIDER:NAME | NAME=PROVIDER:MODEL",
                        help="PROVIDER:NAME: the model of prompts that name none (when no model is declared as "
                             "`default`); NAME=PROVIDER:MODEL (repeatable): replace the declared model NAME")
    if depth:
        parser.add_argument("--max-depth", type=int, default=None, metavar="N",
                            help="stop a run deeper than N nested flow calls (default 64)")


def max_depth(args) -> dict:
    """RunOptions' max_depth from `--max-depth`, if given (a usage error below 1)."""
    if getattr(args, "max_depth", None) is None:
        return {}
    if args.max_depth < 1:
        raise UsageError(f"--max-depth must be at least 1, got {args.max_depth}")
    return {"max_depth": args.max_depth}


@contextlib.contextmanager
def result_only_on_stdout():
    """While flows run under `--json`, everything written to stdout goes to stderr; yields the real stdout.

    Tools run in worker threads (and may start processes), so a redirection
    for one call would not hold: the process's ``sys.stdout`` and file
    descriptor 1 both point at stderr for the whole run, and the result is
    written to the real stdout at the end.
    """
    real = sys.stdout
    real.flush()
    saved = None
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except (OSError, ValueError):  # no descriptor 1 (an embedding host): the Python level still holds
        saved = None
    sys.stdout = sys.stderr
    try:
        yield real
    finally:
        sys.stdout = real
        with contextlib.suppress(OSError, ValueError):
            real.flush()  # what a tool wrote through a saved reference to it goes to stderr too
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
