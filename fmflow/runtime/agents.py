"""Agents: a model that may call tools, retrievers, prompts and flows in rounds."""

from __future__ import annotations

import json
from typing import Any

from .. import ast
from ..checks.blocks import settings_problem
from ..defaults import parameter_schema
from ..providers import ToolSpec
from ..types import RETRIEVER_PARAMS
from .errors import CallFailed, FlowRuntimeError, NotMocked
from .evaluate import Evaluator, gather_all
from .prompts import OnFail, ReplyRejected, accept, model_of, render
from .tool_text import ask_with_tools

DEFAULT_MAX_STEPS = 6
_ANSWER_NOW = ("You have used all {steps} steps without giving a final answer. Answer now from what you "
               "have, without calling tools.")


async def call_agent(run, decl: ast.AgentDecl, args: dict[str, Any], returns) -> Any:
    messages, schema = await render(run, decl, args, returns)
    tools = _tools_of(run, decl)
    specs = offered_tools(run, decl, tools)
    on_fail = OnFail(run, decl, args, returns, await model_of(run, decl))
    max_steps = await _max_steps(run, decl)
    conversation, steps, offer_tools = list(messages), 0, bool(specs)
    while True:
        response = await ask_with_tools(run, decl, on_fail.models, conversation, schema,
                                        specs if offer_tools else None)
        steps += 1
        if not response.tool_calls:
            try:
                return await accept(run, decl, args, returns, response.text)
            except ReplyRejected as rejected:
                conversation, default = await on_fail.handle(rejected, conversation)
                if conversation is None:
                    return default
                steps, offer_tools = 0, bool(specs)
                continue
        conversation.append({"role": "assistant", "content": response.text,
                             "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments}
                                            for c in response.tool_calls]})
        results = await gather_all(_use_tool(run, tools, call) for call in response.tool_calls)
        conversation.extend(results)
        if steps >= max_steps:
            conversation, default, offer_tools = await _out_of_steps(on_fail, decl, max_steps, response,
                                                                     conversation, messages)
            if conversation is None:
                return default
            steps, offer_tools = 0, offer_tools and bool(specs)


async def _max_steps(run, decl: ast.AgentDecl) -> int:
    entry = decl.entry("max_steps")
    max_steps = await Evaluator(run, decl).eval(entry.value) if entry is not None else DEFAULT_MAX_STEPS
    problem = settings_problem("agent", decl.name, {"max_steps": max_steps})
    if problem is not None:
        raise FlowRuntimeError(problem)
    return max_steps


async def _out_of_steps(on_fail: OnFail, decl, max_steps: int, last, conversation: list, messages: list):
    """The agent's `on_fail` when its rounds ran out with tools still being called.

    ``reask(N)`` tells the model to answer now and asks once more without
    tools; ``retry(N)`` and ``fallback`` start over from the first message
    with tools on offer again; ``default(EXPR)`` gives the default; otherwise
    the call fails, showing the last reply. Returns (conversation, None,
    whether tools are offered) or (None, default, False).
    """
    reason = f"it reached its step limit (max_steps {max_steps}) without a final answer"
    if on_fail.policy.kind == "reask" and on_fail.left > 0:
        on_fail.left -= 1
        return [*conversation, {"role": "user", "content": _ANSWER_NOW.format(steps=max_steps)}], None, False
    if on_fail.policy.kind in ("retry", "fallback", "default"):
        try:
            again, default = await on_fail.handle(ReplyRejected(reason, last.text), list(messages))
            return again, default, True
        except CallFailed:
            pass  # its count is spent: fail as below, saying why
    raise CallFailed(f"agent '{decl.name}': {reason}; its last reply: {_describe_reply(last)}")


def _describe_reply(response) -> str:
    calls = ", ".join(f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)})" for c in response.tool_calls)
    text = " ".join((response.text or "").split())
    text = text if len(text) <= 200 else text[:199] + "…"
    shown = [f'"{text}"' if text else "", f"called {calls}" if calls else ""]
    return " and ".join(p for p in shown if p) or "(empty)"


def offered_tools(run, decl: ast.AgentDecl, tools: dict[str, ast.Decl] | None = None) -> list[ToolSpec]:
    """The tools an agent offers its model, described as the model sees them."""
    return [_spec(run, tool) for tool in (tools if tools is not None else _tools_of(run, decl)).values()]


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
    elif (problem := _argument_problem(run, target, call.arguments)) is not None:
        content = f"error: {problem}"
    else:
        try:
            names = list(call.arguments)
            result = await run.call(target, names, [call.arguments[n] for n in names])
            content = json.dumps(run.program.types.to_jsonable(result), ensure_ascii=False)
        except NotMocked:
            raise  # a test that lacks a mock or a scripted reply fails; the model is not told
        except FlowRuntimeError as error:   # the model hears why, with the run's secrets masked
            content = f"error: {run.secrets.mask(error.cause)}"
    return {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content}


def _argument_problem(run, tool: ast.Decl, arguments: Any) -> str | None:
    """What is wrong with the arguments' names (missing required ones, unknown ones), or None.

    Types are checked by the call itself, which tells the model as well.
    """
    if isinstance(tool, ast.RetrieverDecl):
        params = [(name, required) for name, _type, required in RETRIEVER_PARAMS]
    else:
        params = [(p.name, getattr(p, "default", None) is None) for p in tool.params]
    if not isinstance(arguments, dict):
        return f"the arguments of {tool.name} must be a JSON object"
    names = [name for name, _required in params]
    missing = [name for name, required in params if required and name not in arguments]
    unknown = [name for name in arguments if name not in names]
    problems = ([f"missing argument{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"] if missing
                else []) + ([f"unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"]
                            if unknown else [])
    if not problems:
        return None
    told = f"{' and '.join(problems)} for {tool.kind} '{tool.name}'"
    # The valid names matter when the model used others; a missing one is named already.
    return f"{told} (its arguments: {', '.join(names) or 'none'})" if unknown else told
