"""`fmflow check`, `fmt`, `graph` and `lock`: the commands that read flows without running them."""

from __future__ import annotations

import sys

from .common import (EXIT_ERRORS, EXIT_OK, UsageError, checked, checked_pins, flow_files, load_checked,
                     parse_pins, print_diagnostics, select_flow)


def cmd_check(args) -> int:
    pins = parse_pins(args.pin)
    diagnostics, sources = [], {}
    seen: set[tuple] = set()
    loaders = [load_checked(path, pins, check_pins=False)[0] for path in flow_files(args.files)]
    if pins:  # against every file together: a pin names a prompt of one of them
        checked_pins(loaders, pins)
    for loader in loaders:
        sources.update(loader.sources())
        for d in loader.diagnostics():
            key = (d.code, d.span.path, d.span.start, d.message)
            if key not in seen:  # a file imported by two checked files is reported once
                seen.add(key)
                diagnostics.append(d)
    print_diagnostics(diagnostics, sources, args.format)
    if args.format == "text" and not diagnostics:
        print("ok: no problems found", file=sys.stderr)
    return EXIT_ERRORS if any(d.is_error for d in diagnostics) else EXIT_OK


def cmd_fmt(args) -> int:
    from ..diagnostics import Diagnostics
    from ..files import write_atomically
    from ..formatter import format_module
    from ..parser import parse_file
    from ..source import SourceError

    status = EXIT_OK
    changed: list[str] = []
    for path in flow_files(args.files):
        diagnostics = Diagnostics()
        try:
            source, module = parse_file(path, diagnostics)
        except SourceError as error:
            raise UsageError(str(error)) from None
        if diagnostics.has_errors:
            print_diagnostics(diagnostics.sorted(), {path: source})
            status = EXIT_ERRORS
            continue
        formatted = format_module(module)
        if formatted == source.text and not source.bom:  # the canonical form has no byte order mark
            continue
        changed.append(path)
        if not args.check:
            write_atomically(path, formatted)
    for path in changed:
        print(f"{'would reformat' if args.check else 'reformatted'} {path}")
    if args.check and changed:
        status = EXIT_ERRORS
    return status


def cmd_graph(args) -> int:
    from .. import ast
    from ..compiler import build_flow_graph, to_dot, to_dot_flows, to_mermaid, to_mermaid_flows

    ctx = checked(args.file)
    if ctx is None:
        return EXIT_ERRORS
    flows = [d for d in ctx.module.decls if isinstance(d, ast.FlowDecl)]
    pipelines = [d for d in ctx.module.decls if isinstance(d, ast.PipelineDecl)]
    declarations = {name: ctx.lookup(name) for name in ctx.symbols.names()}
    if args.pipeline is not None or (args.flow is None and not flows and pipelines):
        from ..pipeline_graph import build_pipeline_graph

        pipeline = select_flow(pipelines, args.pipeline, args.file, kind="pipeline")
        graph = build_pipeline_graph(pipeline, declarations, ctx.expr_types)
        print(to_dot(graph) if args.format == "dot" else to_mermaid(graph), end="")
        return EXIT_OK
    if args.flow is None and len(flows) > 1:  # every flow, a subgraph each
        graphs = [build_flow_graph(flow, declarations) for flow in flows]
        print(to_dot_flows(graphs) if args.format == "dot" else to_mermaid_flows(graphs), end="")
        return EXIT_OK
    graph = build_flow_graph(select_flow(flows, args.flow, args.file), declarations)
    print(to_dot(graph) if args.format == "dot" else to_mermaid(graph), end="")
    return EXIT_OK


def cmd_lock(args) -> int:
    from ..lockfile import write_lock

    status = EXIT_OK
    for path in flow_files(args.files):
        ctx = checked(path, allow=("E401",))
        if ctx is None:
            status = EXIT_ERRORS
            continue
        lock, hashes = write_lock(ctx)
        print(f"locked {len(hashes)} prompt version{'s' if len(hashes) != 1 else ''} of {path} in {lock}")
    return status


def add_commands(commands) -> None:
    check = commands.add_parser("check", help="check flow files without running them")
    check.add_argument("files", nargs="+", metavar="FILE", help=".fmflow files or folders")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.add_argument("--pin", action="append", metavar="NAME@N", help="use prompt version N of NAME")
    check.set_defaults(handler=cmd_check)

    fmt = commands.add_parser("fmt", help="format flow files in place")
    fmt.add_argument("files", nargs="+", metavar="FILE")
    fmt.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    fmt.set_defaults(handler=cmd_fmt)

    graph = commands.add_parser("graph", help="print the dataflow graph of a flow, or the steps of a pipeline")
    graph.add_argument("file", metavar="FILE")
    graph.add_argument("--flow", help="the flow to draw (default: every flow of the file, a subgraph each)")
    graph.add_argument("--pipeline", help="draw this pipeline's steps as a chain (the only pipeline of a file "
                       "without flows is drawn by default)")
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    graph.set_defaults(handler=cmd_graph)

    lock = commands.add_parser("lock", help="record prompt versions in fmflow.lock")
    lock.add_argument("files", nargs="+", metavar="FILE")
    lock.set_defaults(handler=cmd_lock)
