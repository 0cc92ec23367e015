"""`fmflow trace`: reading the traces that runs write."""

from __future__ import annotations

import os

from .common import EXIT_OK, CommandParser, UsageError


def cmd_trace_show(args) -> int:
    from ..runtime.trace_view import TraceNotFound, find_run, read_trace, render_trace

    try:
        path = find_run(os.path.join(".fmflow", "runs"), args.run)
    except TraceNotFound as error:
        raise UsageError(str(error)) from None
    print(render_trace(read_trace(path)).rstrip())
    return EXIT_OK


def add_commands(commands) -> None:
    trace = commands.add_parser("trace", help="inspect run traces")
    trace_commands = trace.add_subparsers(dest="trace_command", metavar="show", parser_class=CommandParser,
                                          required=True)
    show = trace_commands.add_parser("show", help="print a run as a tree with timings")
    show.add_argument("run", nargs="?", default="last", metavar="RUN", help="run id, prefix, path or 'last'")
    show.set_defaults(handler=cmd_trace_show)
