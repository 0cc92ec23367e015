"""`fmflow trace`: reading the traces that runs write."""

from __future__ import annotations

import os

from .common import EXIT_OK, CommandParser, UsageError

RUNS_DIR = os.path.join(".fmflow", "runs")


def _trace_path(run: str):
    from ..observe.trace_view import TraceNotFound, find_run

    try:
        return find_run(RUNS_DIR, run)
    except TraceNotFound as error:
        raise UsageError(str(error)) from None


def _load(path):
    """The records of a trace; what could not be read is said on stderr."""
    import sys

    from ..observe.trace_view import describe_skipped, load_trace

    records, skipped = load_trace(path)
    if skipped:
        print(f"fmflow: warning: {path}: {describe_skipped(skipped)}", file=sys.stderr)
    return records


def cmd_trace_show(args) -> int:
    from ..observe.trace_view import render_trace

    print(render_trace(_load(_trace_path(args.run))).rstrip())
    return EXIT_OK


def cmd_trace_view(args) -> int:
    from ..files import write_atomically
    from ..observe.html_view import render_html

    path = _trace_path(args.run)
    output = args.output or str(path.with_suffix(".html"))
    write_atomically(output, render_html(_load(path)))
    print(output)
    return EXIT_OK


def add_commands(commands) -> None:
    trace = commands.add_parser("trace", help="inspect run traces")
    trace_commands = trace.add_subparsers(dest="trace_command", metavar="show|view", parser_class=CommandParser,
                                          required=True)
    show = trace_commands.add_parser("show", help="print a run as a tree with timings")
    show.add_argument("run", nargs="?", default="last", metavar="RUN", help="run id, prefix, path or 'last'")
    show.set_defaults(handler=cmd_trace_show)
    view = trace_commands.add_parser("view", help="write a run as a self-contained HTML page (timeline, calls)")
    view.add_argument("run", nargs="?", default="last", metavar="RUN", help="run id, prefix, path or 'last'")
    view.add_argument("--output", metavar="FILE.html", help="where to write the page (default: beside the trace)")
    view.set_defaults(handler=cmd_trace_view)
