"""`fmflow pipeline`: run a `pipeline` declaration from its source to its sink (fmflow/data/pipeline.py)."""

from __future__ import annotations

import sys

from .common import (EXIT_ERRORS, EXIT_OK, UsageError, add_budget_option, add_run_options, check_model_names,
                     load_flow_program, parse_model, parse_pins, require_regular_file)


def cmd_pipeline(args) -> int:
    from ..data import DataError
    from ..data.pipeline import run_pipeline, summary

    require_regular_file(args.file)
    if args.name and args.name_option and args.name != args.name_option:
        raise UsageError(f"two pipeline names given: '{args.name}' and --name {args.name_option}")
    model = parse_model(args.model)
    pins = parse_pins(args.pin)
    program, status = load_flow_program(args.file, pins)
    if program is None:
        return status
    check_model_names(model, [program])
    try:
        result = run_pipeline(args.file, args.name or args.name_option, resume=args.resume, limit=args.limit,
                              engine=args.engine, scheduler=args.scheduler, concurrency=args.concurrency,
                              cache=not args.no_cache, model=model.default, models=model.overrides or None,
                              pins=pins, program=program, budget=args.budget)
    except DataError as error:
        raise UsageError(str(error)) from None
    except KeyboardInterrupt:
        print("fmflow: interrupted; the finished records are saved: continue with --resume", file=sys.stderr)
        return 130
    if result.discarded:
        print("fmflow: an unfinished run of this pipeline was started over (--resume continues one)",
              file=sys.stderr)
    print(summary(result), file=sys.stderr)
    return EXIT_ERRORS if result.failed or result.stopped else EXIT_OK


def add_commands(commands) -> None:
    pipeline = commands.add_parser("pipeline", help="run a pipeline: source, steps, sink")
    pipeline.add_argument("file", metavar="FILE")
    pipeline.add_argument("name", nargs="?", metavar="NAME", help="the pipeline (needed when the file has several)")
    pipeline.add_argument("--name", dest="name_option", metavar="NAME", help="the same as NAME")
    pipeline.add_argument("--resume", action="store_true",
                          help="continue the run that was interrupted, skipping finished records")
    pipeline.add_argument("--limit", type=int, metavar="N", help="only the first N records of the source")
    pipeline.add_argument("--engine", choices=("local", "dask"), default="local",
                          help="local: one process (default); dask: a Dask cluster")
    pipeline.add_argument("--scheduler", metavar="ADDR",
                          help="the Dask scheduler (tcp://host:8786); without it, a local cluster of 2 workers")
    pipeline.add_argument("--concurrency", type=int, default=16, metavar="N",
                          help="records running at once (default 16); models keep their own limits")
    pipeline.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    add_run_options(pipeline, depth=False)
    add_budget_option(pipeline)
    pipeline.set_defaults(handler=cmd_pipeline)
