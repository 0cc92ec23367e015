"""`fmflow eval`: run an `eval` declaration and report its statistics (fmflow/evals)."""

from __future__ import annotations

import math
import sys

from .common import (EXIT_ERRORS, EXIT_OK, UsageError, add_budget_option, add_run_options, check_model_names,
                     load_flow_program, parse_model, require_regular_file)


def parse_bounds(specs: list[str] | None, metrics: list[str]) -> dict[str, float]:
    """``--fail-under METRIC=VALUE`` options, each naming a metric of the eval."""
    bounds: dict[str, float] = {}
    for spec in specs or []:
        name, sep, raw = spec.partition("=")
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not sep or not name or not math.isfinite(value):
            raise UsageError(f"--fail-under expects METRIC=VALUE (e.g. correct=0.8), got '{spec}'")
        if name not in metrics:
            raise UsageError(f"--fail-under names no metric of the eval: '{name}' (metrics: {', '.join(metrics)})")
        bounds[name] = value
    return bounds


def cmd_eval(args) -> int:
    from ..data import DataError
    from ..evals.plan import EvalError, read_plan
    from ..evals.report import text_report, to_json
    from ..evals.runner import run_eval
    from ..evals.summary import check_bounds, summarise

    require_regular_file(args.file)
    if args.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {args.concurrency}")
    model = parse_model(args.model)
    program, status = load_flow_program(args.file, diagnostics_to=sys.stderr if args.json else None)
    if program is None:
        return status
    check_model_names(model, [program])
    try:
        plan = read_plan(program, args.name)
        bounds = parse_bounds(args.fail_under, [m.name for m in plan.metrics])
        run = run_eval(args.file, name=plan.name, cache=not args.no_cache, trace=args.trace,
                       concurrency=args.concurrency, program=program, on_record=_progress(args),
                       budget=args.budget, model=model.default, models=model.overrides or None)
    except (DataError, EvalError) as error:
        raise UsageError(str(error)) from None
    except KeyboardInterrupt:
        _end_progress(args)
        print("fmflow: interrupted; the finished records are saved and the next `fmflow eval` continues",
              file=sys.stderr)
        return 130
    _end_progress(args)
    summary = summarise(run, seed=args.seed)
    missed = check_bounds(summary, bounds)
    if bounds:
        summary["failed_bounds"] = missed
    if args.html:
        from ..evals.html import write_html

        write_html(summary, run, args.html)
    print(to_json(summary) if args.json else text_report(summary), end="" if not args.json else "\n")
    if args.html:
        print(f"report: {args.html}", file=sys.stderr)
    for problem in missed:
        print(f"fmflow: below --fail-under: {problem}", file=sys.stderr)
    not_run = sum(v.not_run for v in run.variants)
    if not_run:
        print(f"fmflow: the budget of ${args.budget:.4f} was reached: {not_run} runs of records were not made "
              "and are left out of the statistics; run the eval again with a larger --budget to finish them "
              "(what ran is kept)", file=sys.stderr)
    return EXIT_ERRORS if missed or not_run else EXIT_OK


def _shows_progress(args) -> bool:
    return not args.json and sys.stderr.isatty()


def _end_progress(args) -> None:
    if _shows_progress(args):
        print(file=sys.stderr)


def _progress(args):
    """Records finished per variant, on one line of stderr rewritten in place (on a terminal only)."""
    if not _shows_progress(args):
        return None
    counts: dict[str, int] = {}

    def report(variant: str, line: int) -> None:
        counts[variant] = counts.get(variant, 0) + 1
        text = "  ".join(f"{name}: {n}" for name, n in counts.items())
        print(f"\r{text}", end="", file=sys.stderr, flush=True)
    return report


def add_commands(commands) -> None:
    command = commands.add_parser("eval", help="compare prompt versions or models on a dataset (an `eval` block)")
    command.add_argument("file", metavar="FILE")
    command.add_argument("--name", help="the eval to run (needed when the file has several)")
    command.add_argument("--html", metavar="REPORT.html", help="also write a self-contained HTML report")
    command.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    command.add_argument("--fail-under", action="append", metavar="METRIC=VALUE",
                         help="exit 1 when a variant's METRIC (rate or mean) is under VALUE (repeatable)")
    command.add_argument("--concurrency", type=int, default=16, metavar="N",
                         help="records running at once per variant (default 16); models keep their own limits")
    command.add_argument("--no-cache", action="store_true",
                         help="run every record again: no stored outputs, no response cache")
    command.add_argument("--trace", action="store_true", help="write a trace per flow run and one for the judges")
    command.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    add_run_options(command, pin=False, depth=False)
    add_budget_option(command)
    command.set_defaults(handler=cmd_eval)
