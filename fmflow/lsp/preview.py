"""The "Preview prompt" command: the messages a prompt or agent would send, without a model call.

It goes through the runtime's own rendering (``fmflow render`` when the
runtime has it), so the preview is what a run sends. Inputs the editor does
not give are shown as ``<name>`` for text parameters.
"""

from __future__ import annotations

from typing import Any

from .. import ast
from ..checks.context import CheckContext
from ..types import STR


class PreviewError(Exception):
    """Why a preview cannot be shown (the editor shows the message)."""


def prompt_named(ctx: CheckContext, written: str) -> ast.Decl:
    name, at, version = written.partition("@")
    decl = ctx.lookup(name, int(version) if at and version.isdigit() else None)
    if not isinstance(decl, (ast.PromptDecl, ast.AgentDecl)):
        raise PreviewError(f"no prompt or agent '{written}' in {ctx.path}")
    return decl


async def preview(ctx: CheckContext, has_errors: bool, written: str, inputs: dict[str, Any] | None) -> str:
    """The rendered messages of prompt ``written`` (``NAME`` or ``NAME@N``) of a checked file."""
    from ..runtime import Program
    from ..runtime.errors import FlowRuntimeError

    if has_errors:
        raise PreviewError("the file or one it imports has errors; fix them to preview its prompts")
    program = Program(ctx.loader, ctx)
    decl = prompt_named(ctx, written)
    params, returns = program.signature(decl)
    given = dict(inputs or {})
    for name, param_type in params:
        if name not in given and param_type == STR:
            given[name] = f"<{name}>"
    try:
        return await _render(program, decl, given, returns)
    except FlowRuntimeError as error:
        raise PreviewError(str(error)) from None


async def _render(program, decl: ast.Decl, inputs: dict[str, Any], returns) -> str:
    from ..runtime.run import RunOptions

    options = RunOptions(cache=False, trace=False)
    try:
        from ..runtime.preview import preview_prompt, preview_text
    except ImportError:  # a runtime without `fmflow render`: its prompt rendering, as text
        return await _messages_text(program, decl, inputs, returns, options)
    return preview_text(await preview_prompt(program, decl, inputs, options))


async def _messages_text(program, decl: ast.Decl, inputs: dict[str, Any], returns, options) -> str:
    import inspect

    from ..runtime.prompts import render
    from ..runtime.run import RunState

    rendered = render(RunState(program, options), decl, inputs, returns)
    messages, _schema = await rendered if inspect.isawaitable(rendered) else rendered
    lines = [f"{decl.kind} {decl.name}"]
    for message in messages:
        lines += ["", f"── {message['role']} " + "─" * max(3, 60 - len(message["role"])), str(message["content"])]
    return "\n".join(lines) + "\n"
