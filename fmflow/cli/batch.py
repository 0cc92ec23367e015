"""`fmflow batch`: run a flow once per record of a JSONL, CSV or Parquet file (fmflow/data)."""

from __future__ import annotations

import sys

from .common import (EXIT_ERRORS, EXIT_OK, UsageError, add_budget_option, add_run_options, check_model_names,
                     load_flow_program, parse_model, parse_pins, require_regular_file)


def cmd_batch(args) -> int:
    from ..data import DataError, run_batch
    from ..data.progress import summary

    require_regular_file(args.file)
    model = parse_model(args.model)
    pins = parse_pins(args.pin)
    program, status = load_flow_program(args.file, pins)
    if program is None:
        return status
    check_model_names(model, [program])
    try:
        result = run_batch(args.file, args.input, args.output, flow=args.flow, concurrency=args.concurrency,
                           resume=args.resume, overwrite=args.overwrite, ordered=args.ordered,
                           engine=args.engine, scheduler=args.scheduler, cache=not args.no_cache,
                           trace=args.trace, model=model.default,
                           models=model.overrides or None, pins=pins, program=program, progress=True,
                           budget=args.budget)
    except DataError as error:
        raise UsageError(str(error)) from None
    except KeyboardInterrupt:
        print("fmflow: interrupted; the finished records are saved: continue with --resume", file=sys.stderr)
        return 130
    print(summary(result), file=sys.stderr)
    return EXIT_ERRORS if result.failed else EXIT_OK


def add_commands(commands) -> None:
    batch = commands.add_parser("batch", help="run a flow once per record of a JSONL, CSV or Parquet file")
    batch.add_argument("file", metavar="FILE")
    batch.add_argument("--input", required=True, metavar="DATA",
                       help="records, one per line or row: .jsonl, .csv or .parquet")
    batch.add_argument("--output", required=True, metavar="OUT.jsonl",
                       help='one line per record: {"line": N, "output": …} or {"line": N, "error": …}')
    batch.add_argument("--flow", help="the flow to run (needed when the file has several)")
    batch.add_argument("--concurrency", type=int, default=16, metavar="N",
                       help="records running at once (default 16); models keep their own limits")
    batch.add_argument("--resume", action="store_true",
                       help="continue the batch that wrote OUTPUT, skipping finished records")
    batch.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    batch.add_argument("--ordered", action="store_true", help="write the output in input order")
    batch.add_argument("--engine", choices=("local", "dask"), default="local",
                       help="local: one process (default); dask: a Dask cluster")
    batch.add_argument("--scheduler", metavar="ADDR",
                       help="the Dask scheduler (tcp://host:8786); without it, a local cluster of 2 workers")
    batch.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    batch.add_argument("--trace", action="store_true",
                       help="write a trace per record to .fmflow/runs/ (off by default: one file per record)")
    add_run_options(batch, depth=False)
    add_budget_option(batch)
    batch.set_defaults(handler=cmd_batch)
