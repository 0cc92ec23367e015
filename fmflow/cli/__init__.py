"""The `fmflow` command: wiring only; every phase lives in its own module.

argparse rather than typer: `fmflow check` must start in well under 0.3 s,
and typer with rich costs about 90 ms of imports (see docs/architecture.md).
Each command group is a module with an ``add_commands(commands)`` function
and ``cmd_*`` handlers that call one function of their subsystem.
Exit status: 0 clean (warnings allowed), 1 errors, 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .common import EXIT_ERRORS, EXIT_USAGE, CommandParser, UsageError

# Each command group's module (in `fmflow --help` order) and the commands it adds.
# Running a command imports its group alone: `fmflow check` does not load the
# modules (and option defaults) of `run`, `serve`, `index`….
COMMAND_GROUPS = {
    "checking": ("check", "fmt", "graph", "lock"),
    "running": ("run", "test"),
    "rendering": ("render",),
    "batch": ("batch",),
    "pipeline": ("pipeline",),
    "evaluating": ("eval",),
    "traces": ("trace",),
    "indexing": ("index",),
    "serve": ("serve",),
    "editor": ("lsp",),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of the one command ``argv`` names (same options, same messages)."""
    from .. import __version__

    parser = CommandParser(prog="fmflow", description="Declarative, checked, versioned foundation-model flows.")
    parser.add_argument("--version", action="version", version=f"fmflow {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for group in command_groups(argv):
        importlib.import_module(f"{__name__}.{group}").add_commands(commands)
    return parser


def command_groups(argv: list[str] | None) -> list[str]:
    """The group of the command ``argv`` names; every group when it names none (help, usage errors)."""
    # Only --debug may come before the command (whatever else does, --help
    # included, is handled by the parser of every command).
    words = list(argv or ())
    while words and words[0] == "--debug":
        words.pop(0)
    for group, names in COMMAND_GROUPS.items():
        if words and words[0] in names:
            return [group]
    return list(COMMAND_GROUPS)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    stdout = sys.stdout
    sys.stdout = _StdoutGuard(stdout)
    try:
        status = _dispatch(args)
        sys.stdout.flush()  # a reader that left shows up here at the latest, not at exit
        return status
    finally:
        sys.stdout = stdout


def _dispatch(args) -> int:
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"fmflow: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fmflow: interrupted", file=sys.stderr)
        return 130
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


class _StdoutGuard:
    """sys.stdout that outlives its reader (`fmflow check … | head`).

    Once the reader has gone, output is dropped and the command goes on to
    its own exit status (errors found still give 1 under `set -o pipefail`),
    instead of dying of BrokenPipeError. Text that stdout's encoding cannot
    hold is written as backslash escapes rather than failing the command.
    """

    def __init__(self, stream) -> None:
        self._stream = stream
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_left()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_left()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)

    def _reader_left(self) -> None:
        # What is still buffered goes to /dev/null at exit, not to a closed pipe
        # (where Python would report the failure and exit with 120).
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass  # not a real file (a test's capture): later writes are caught again


def run() -> None:
    sys.exit(main())
