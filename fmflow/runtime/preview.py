"""What a prompt or agent would send to its model, without sending it (`fmflow render`).

The messages come from the runtime's own ``prompts.render``, so a preview
shows exactly what a run sends: the system text, the conversation, the
user message with its output instructions, and the JSON schema of a typed
reply; an agent's tools as they are offered to the model.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .. import ast
from .errors import FlowRuntimeError
from .prompts import model_of, render
from .run import RunOptions, RunState


async def preview_prompt(program, decl: ast.Decl, inputs: dict[str, Any],
                         options: RunOptions | None = None) -> dict[str, Any]:
    """The request ``decl`` would make with ``inputs`` (checked like a run's), as plain JSON data."""
    from .agents import offered_tools

    if not isinstance(decl, (ast.PromptDecl, ast.AgentDecl)):
        raise FlowRuntimeError(f"'{decl.name}' is a {decl.kind}; only prompts and agents send messages")
    run = RunState(program, options or RunOptions(cache=False, trace=False))
    params, returns = program.signature(decl)
    args = {name: run.validate(t, inputs[name], f"input '{name}'") for name, t in params if name in inputs}
    messages, schema = await render(run, decl, args, returns)
    config = await model_of(run, decl)
    preview: dict[str, Any] = {
        "kind": decl.kind, "name": decl.name,
        "version": decl.effective_version if isinstance(decl, ast.PromptDecl) else None,
        "model": {"name": config.name, "provider": config.provider, "model": config.model,
                  "temperature": config.temperature, "max_tokens": config.max_tokens},
        "messages": messages, "schema": schema,
    }
    if isinstance(decl, ast.AgentDecl):
        preview["tools"] = [asdict(spec) for spec in offered_tools(run, decl)]
    return preview


def preview_text(preview: dict[str, Any]) -> str:
    """A preview for people: each message under a rule naming its role, then the schema and tools."""
    import json

    model = preview["model"]
    title = f"{preview['kind']} {preview['name']}" + (f"@{preview['version']}" if preview.get("version") else "")
    answered = f"{model['provider']}:{model['model']}" if model.get("model") else model["provider"]
    lines = [f"{title} → model {model['name']} ({answered})"]
    for message in preview["messages"]:
        lines += ["", f"── {message['role']} " + "─" * max(3, 60 - len(message["role"])),
                  str(message.get("content") or "")]
    if preview.get("schema") is not None:
        lines += ["", "── output schema " + "─" * 47, json.dumps(preview["schema"], indent=2, ensure_ascii=False)]
    if preview.get("tools"):
        lines += ["", "── tools " + "─" * 55,
                  *(f"{tool['name']}: {json.dumps(tool['parameters'], ensure_ascii=False)}"
                    for tool in preview["tools"])]
    return "\n".join(lines) + "\n"
