"""`fmflow trace`: reading the traces that runs write."""

from __future__ import annotations

import os

from .common import EXIT_OK, CommandParser, UsageError


def cmd_trace_show(args) -> int:
    import sys

    from ..observe.trace_view import TraceNotFound, describe_skipped, find_run, load_trace, render_trace

    try:
        path = find_run(os.path.join(".fmflow", "runs"), args.run)
    except TraceNotFound as error:
        raise UsageError(str(error)) from None
    records, skipped = load_trace(path)
    # What can be read is shown; what could not is said, on stderr.
    print(render_trace(records).rstrip())
    if skipped:
        print(f"fmflow: warning: {path}: {describe_skipped(skipped)}", file=sys.stderr)
    return EXIT_OK


def add_commands(commands) -> None:
    trace = commands.add_parser("trace", help="inspect run traces")
    trace_commands = trace.add_subparsers(dest="trace_command", metavar="show", parser_class=CommandParser,
                                          required=True)
    show = trace_commands.add_parser("show", help="print a run as a tree with timings")
    show.add_argument("run", nargs="?", default="last", metavar="RUN", help="run id, prefix, path or 'last'")
    show.set_defaults(handler=cmd_trace_show)
