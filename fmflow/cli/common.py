"""What every command shares: exit codes, usage errors, reading flow files, printing diagnostics."""

from __future__ import annotations

import argparse
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


def load_checked(path: str, pins: dict[str, int] | None = None):
    """(loader, context) of a checked file; a file that cannot be read is a usage error."""
    from ..api import load_program
    from ..source import SourceError

    try:
        return load_program(path, pins=pins)
    except SourceError as error:
        raise UsageError(str(error)) from None


def checked(path: str, pins: dict[str, int] | None = None, allow: tuple[str, ...] = (), diagnostics_to=None):
    """A checked file's context; prints diagnostics (on stdout, or ``diagnostics_to``) and returns None on errors."""
    loader, ctx = load_checked(path, pins)
    diagnostics = loader.diagnostics()
    blocking = [d for d in diagnostics if d.is_error and d.code not in allow]
    if blocking:
        print_diagnostics(diagnostics, loader.sources(), file=diagnostics_to)
        return None
    return ctx


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


def require_regular_file(path: str) -> None:
    """A usage error naming what is wrong with a file given on the command line (missing, a folder, a FIFO…)."""
    from ..files import not_a_regular_file

    reason = not_a_regular_file(path)
    if reason is not None:
        raise UsageError(f"cannot read '{path}': {reason}")


def load_flow_program(path: str, pins: dict[str, int] | None = None, diagnostics_to=None):
    """(Program, None) for a file without errors, else (None, exit status) after printing them."""
    from ..runtime import Program

    ctx = checked(path, pins=pins, diagnostics_to=diagnostics_to)
    if ctx is None:
        return None, EXIT_ERRORS
    return Program(ctx.loader, ctx), None


def parse_model(spec: str | None) -> str | None:
    if spec is None:
        return None
    from ..providers.base import split_model_spec

    if split_model_spec(spec) is None:
        raise UsageError(f"--model expects PROVIDER:NAME (e.g. ollama:llama3.2), got '{spec}'")
    return spec


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
