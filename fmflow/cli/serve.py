"""`fmflow serve`: every flow of the given files as an HTTP service.

FastAPI and uvicorn are imported inside the command only, so that the
other commands (`fmflow check` above all) never pay for them.
"""

from __future__ import annotations

import os
import re
import sys

from .common import (EXIT_ERRORS, EXIT_OK, UsageError, add_run_options, check_model_names, flow_files,
                     load_flow_programs, max_depth, parse_model, parse_pins)

TOKEN_ENV = "FMFLOW_SERVE_TOKEN"
_SIZE = re.compile(r"(\d+)\s*(b|kb|k|mb|m|gb|g)?", re.IGNORECASE)
_UNITS = {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def cmd_serve(args) -> int:
    max_body = parse_size(args.max_body_size)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    if args.grace < 0:
        raise UsageError(f"--grace must be zero or more seconds, got {args.grace:g}")
    token = _token()
    model, pins, depth = parse_model(args.model), parse_pins(args.pin), max_depth(args)
    files = flow_files(args.files)
    programs = load_flow_programs(files, pins)  # every file's diagnostics, then stop
    if any(program is None for program in programs):
        return EXIT_ERRORS
    check_model_names(model, programs)

    from ..runtime import RunOptions
    from ..serve import FlowCatalog, FlowNameClash, ServerSettings, ServeSettings, build_app, is_loopback, run_server

    try:
        catalog = FlowCatalog.from_programs(programs)
    except FlowNameClash as error:
        raise UsageError(str(error)) from None
    if not len(catalog):
        raise UsageError(f"no flow to serve: {', '.join(files)} declare{'s' if len(files) == 1 else ''} no flow")
    if not token and not is_loopback(args.host):
        print(f"fmflow: warning: serving on {args.host}, reachable from other machines, without a token; "
              f"set {TOKEN_ENV} to require 'Authorization: Bearer <token>'", file=sys.stderr)
    options = RunOptions(cache=not args.no_cache, model=model.default, models=model.overrides or None, **depth)
    app = build_app(catalog, options, ServeSettings(token, max_body))
    names = ", ".join(flow.name for flow in catalog)
    announce = f"serving {len(catalog)} flow{'s' if len(catalog) != 1 else ''} ({names})"
    run_server(app, ServerSettings(args.host, args.port, args.grace, access_log=not args.no_access_log), announce)
    return EXIT_OK


def _token() -> str | None:
    token = os.environ.get(TOKEN_ENV)
    if token is None:
        return None
    if not token.strip():
        raise UsageError(f"{TOKEN_ENV} is set but empty; give it a token, or unset it to serve without one")
    return token.strip()


def parse_size(text: str) -> int:
    """Bytes from `1048576`, `512KB`, `1MB`, `2m` (units of 1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or int(match.group(1)) < 1:
        raise UsageError(f"--max-body-size expects a size such as 1048576, 512KB or 1MB, got '{text}'")
    unit = (match.group(2) or "b").lower()[0]
    return int(match.group(1)) * _UNITS[unit]


def add_commands(commands) -> None:
    serve = commands.add_parser("serve", help="serve every flow over HTTP (FastAPI + uvicorn)")
    serve.add_argument("files", nargs="+", metavar="FILE", help="flow files (or folders of them)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free one)")
    serve.add_argument("--max-body-size", default="1MB", metavar="SIZE",
                       help="largest request body accepted, e.g. 1MB or 65536 (default 1MB; larger: 413)")
    serve.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                       help="on SIGTERM, how long requests in flight may take to finish (default 30)")
    serve.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    add_run_options(serve)
    serve.add_argument("--no-access-log", action="store_true", help="do not log each request")
    serve.set_defaults(handler=cmd_serve)
