"""Agents: a model that may call tools, retrievers, prompts and flows in rounds."""

from __future__ import annotations

import json
from typing import Any

from .. import ast
from ..checks.blocks import settings_problem
from ..defaults import parameter_schema
from ..providers import ToolSpec
from .errors import CallFailed, FlowRuntimeError
from .evaluate import Evaluator, gather_all
from .prompts import OnFail, ReplyRejected, accept, model_of, render
from .tool_text import ask_with_tools

DEFAULT_MAX_STEPS = 6


async def call_agent(run, decl: ast.AgentDecl, args: dict[str, Any], returns) -> Any:
    messages, schema = await render(run, decl, args, returns)
    tools = _tools_of(run, decl)
    specs = [_spec(run, tool) for tool in tools.values()]
    on_fail = OnFail(run, decl, args, returns, await model_of(run, decl))
    steps_entry = decl.entry("max_steps")
    max_steps = await Evaluator(run, decl).eval(steps_entry.value) if steps_entry is not None else DEFAULT_MAX_STEPS
    problem = settings_problem("agent", decl.name, {"max_steps": max_steps})
    if problem is not None:
        raise FlowRuntimeError(problem)
    conversation = list(messages)
    for _step in range(max_steps):
        response = await ask_with_tools(run, decl, on_fail.models, conversation, schema, specs)
        if not response.tool_calls:
            try:
                return await accept(run, decl, args, returns, response.text)
            except ReplyRejected as rejected:
                conversation, default = await on_fail.handle(rejected, conversation)
                if conversation is None:
                    return default
                continue
        conversation.append({"role": "assistant", "content": response.text,
                             "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments}
                                            for c in response.tool_calls]})
        results = await gather_all(_use_tool(run, tools, call) for call in response.tool_calls)
        conversation.extend(results)
    raise CallFailed(f"agent '{decl.name}' did not finish within max_steps {max_steps}")


def _tools_of(run, decl: ast.AgentDecl) -> dict[str, ast.Decl]:
    entry = decl.entry("tools")
    if entry is None:
        return {}
    found = {}
    for item in entry.value.items:
        target = run.program.lookup(item.id, item.version, within=decl)
        if target is not None:
            found[target.name] = target
    return found


def _spec(run, tool: ast.Decl) -> ToolSpec:
    """The callable as the model sees it: its `##` doc (else its kind and name) as the
    description; each parameter's JSON schema with its doc and constant default, and a
    parameter with a default left out of `required`."""
    description = tool.doc.text if tool.doc is not None else f"{tool.kind} {tool.name}"
    if isinstance(tool, ast.RetrieverDecl):
        properties = {"query": {"type": "string", "description": "what to search for"}}
        return ToolSpec(name=tool.name, description=description,
                        parameters={"type": "object", "properties": properties, "required": ["query"],
                                    "additionalProperties": False})
    params, _returns = run.program.signature(tool)
    properties, required = {}, []
    for param, (name, t) in zip(tool.params, params):
        properties[name] = parameter_schema(run.program.types.json_schema(t), param, _enums_of(run, tool))
        if param.default is None:
            required.append(name)
    return ToolSpec(name=tool.name, description=description,
                    parameters={"type": "object", "properties": properties, "required": required,
                                "additionalProperties": False})


def _enums_of(run, decl: ast.Decl):
    return lambda name: isinstance(run.program.lookup(name, within=decl), ast.EnumDecl)


async def _use_tool(run, tools: dict[str, ast.Decl], call) -> dict[str, Any]:
    """One tool call's message; a failing tool tells the model why instead of ending the run."""
    target = tools.get(call.name)
    if target is None:
        content = f"error: there is no tool '{call.name}'; tools: {', '.join(tools) or 'none'}"
    else:
        try:
            names = list(call.arguments)
            result = await run.call(target, names, [call.arguments[n] for n in names])
            content = json.dumps(run.program.types.to_jsonable(result), ensure_ascii=False)
        except FlowRuntimeError as error:   # the model hears why, with the run's secrets masked
            content = f"error: {run.secrets.mask(error.cause)}"
    return {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content}
