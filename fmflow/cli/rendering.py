"""`fmflow render`: the messages a prompt would send, without calling a model."""

from __future__ import annotations

import sys

from .common import (EXIT_ERRORS, EXIT_OK, UsageError, add_run_options, check_model_names, load_flow_program,
                     parse_model, parse_pins, result_only_on_stdout)
from .running import call_inputs


def cmd_render(args) -> int:
    import asyncio
    import json

    from ..runtime import RunOptions
    from ..runtime.errors import FlowRuntimeError
    from ..runtime.preview import preview_prompt, preview_text

    model = parse_model(args.model)
    program, status = load_flow_program(args.file, parse_pins(args.pin))
    if program is None:
        return status
    check_model_names(model, [program])
    decl = _prompt(program, args.prompt)
    inputs = call_inputs(program, decl, args)
    options = RunOptions(cache=False, trace=False, model=model.default, models=model.overrides or None)
    try:
        with result_only_on_stdout() as stdout:
            preview = asyncio.run(preview_prompt(program, decl, inputs, options))
    except FlowRuntimeError as error:
        print(f"fmflow: error: {error}", file=sys.stderr)
        return EXIT_ERRORS
    stdout.write(json.dumps(preview, ensure_ascii=False) + "\n" if args.json else preview_text(preview))
    return EXIT_OK


def _prompt(program, written: str):
    """The prompt or agent `--prompt NAME[@N]` names (a usage error otherwise)."""
    from .. import ast
    from ..diagnostics import suggestion_help

    name, at, version = written.partition("@")
    if not name.isidentifier() or (at and (not version.isdigit() or int(version) < 1)):
        raise UsageError(f"--prompt expects NAME or NAME@N (e.g. answer@2), got '{written}'")
    decl = program.lookup(name, int(version) if at else None)
    if isinstance(decl, (ast.PromptDecl, ast.AgentDecl)):
        return decl
    found = program.lookup(name)
    if isinstance(found, ast.PromptDecl):
        versions = ", ".join(f"@{v}" for v in program.ctx.symbols.versions(name))
        raise UsageError(f"prompt '{name}' has no version {version} (declared: {versions})")
    if found is not None:
        raise UsageError(f"'{name}' is a {found.kind}; only prompts and agents send messages")
    names = [n for n, ds in program.ctx.symbols.decls.items() if ds[0].kind in ("prompt", "agent")]
    help = suggestion_help(name, names) or (f"prompts and agents: {', '.join(names)}" if names else
                                            "the file declares no prompt")
    raise UsageError(f"no prompt '{name}' in {program.path}; {help}")


def add_commands(commands) -> None:
    render = commands.add_parser("render", help="print the messages a prompt would send, without calling a model")
    render.add_argument("file", metavar="FILE")
    render.add_argument("--prompt", required=True, metavar="NAME[@N]", help="the prompt or agent to render")
    render.add_argument("-i", "--input", action="append", metavar="KEY=VALUE",
                        help="an input; KEY=@path reads the value from a file")
    render.add_argument("--input-json", metavar="JSON", help="all inputs as a JSON object (or @file)")
    render.add_argument("--json", action="store_true",
                        help="print {kind, name, version, model, messages, schema, tools} as JSON")
    add_run_options(render, depth=False)
    render.set_defaults(handler=cmd_render)
