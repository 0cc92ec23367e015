"""Agents without native tool calls: tools described in text, calls read from JSON replies.

An agent's round goes through the text protocol instead of the request's
``tools`` when its model is declared with ``native_tools: false``, when its
provider cannot send tools (``hf``), or when the model's server refused them
earlier in the run (a 400 naming tools, tool_choice or function calling; a
LangChain model without ``bind_tools``): the model is then remembered for the
rest of the run, and the refused round is asked again in text at once.

The protocol: the system message lists the tools with their JSON schemas and
asks for a reply that is only ``{"tool": NAME, "arguments": {…}}`` (or a list
of such objects) to call tools, and ``{"answer": …}`` to finish. Results come
back as one user message per round. Replies are read tolerantly (code fences,
prose around the JSON, ``{"name": …, "arguments": …}`` as function-calling
models write it, ``{"tool_calls": […]}``); a reply with no tool call is the
answer, as a native reply without tool calls is. A reply that tries to call a
tool but cannot be read is sent back with the reason, at most
``MAX_PROTOCOL_REASKS`` times in a row; then the call fails saying why.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..providers import ChatResponse, ProviderError, ToolCall, ToolsUnsupported, get_provider
from .errors import CallFailed
from .outputs import OutputParseError, parse_json_lenient
from .prompts import ask_model

MAX_PROTOCOL_REASKS = 2

_PROTOCOL = """You can use these tools:

{tools}

To use a tool, reply with only a JSON object, nothing before or after it:
{{"tool": "<tool name>", "arguments": {{<the tool's arguments>}}}}
To use several tools at once, reply with a JSON list of such objects. Each tool's result comes back in \
the next message.
When you have the final answer, reply with only:
{{"answer": <your final answer>}}"""

_NOT_READ = ("Your reply could not be read as a tool call: {reason}. Reply with only "
             '{{"tool": "<tool name>", "arguments": {{…}}}} to use a tool, or {{"answer": …}} to finish.')

# A reply that means to call a tool: a "tool" key, or "name" beside "arguments".
_LOOKS_LIKE_A_CALL = re.compile(r'"(tool|tool_calls)"\s*:|"name"\s*:[^{}]*"arguments"\s*:', re.DOTALL)


class ProtocolError(Exception):
    """A reply that tries to call a tool and cannot be read; the message says why."""


def uses_text(run, config) -> bool:
    """Whether this model's agent rounds go through the text protocol."""
    if not config.native_tools or config.key in run.text_tool_models:
        return True
    try:
        return not get_provider(config.provider).supports_tools
    except ProviderError:
        return False  # an unknown provider fails when asked, saying so


async def ask_with_tools(run, decl, models: list, conversation: list[dict], schema, specs) -> ChatResponse:
    """One round of an agent: the model's reply, with its tool calls, natively or through text."""
    if specs and not uses_text(run, models[0]):
        try:
            response, _commit = await ask_model(run, decl, models, conversation, schema, specs, use_cache=False)
            return response
        except ToolsUnsupported as refused:
            config = getattr(refused, "config", models[0])
            run.text_tool_models.add(config.key)
            _trace_switch(run, decl, config, str(refused))
    if not specs:
        response, _commit = await ask_model(run, decl, models, conversation, schema, None, use_cache=False)
        return response
    return await _ask_in_text(run, decl, models, conversation, specs)


async def _ask_in_text(run, decl, models, conversation, specs) -> ChatResponse:
    messages = text_messages(conversation, specs)
    for attempt in range(MAX_PROTOCOL_REASKS + 1):
        # No output schema (a server would hold the reply to it: no tool call could be written) and
        # an empty tool list (nothing sent, and a tool call's JSON is never streamed as the answer).
        response, _commit = await ask_model(run, decl, models, messages, None, [], use_cache=False)
        try:
            return read_reply(response)
        except ProtocolError as error:
            reason = str(error)
        if attempt < MAX_PROTOCOL_REASKS:
            messages = [*messages, {"role": "assistant", "content": response.text},
                        {"role": "user", "content": _NOT_READ.format(reason=reason)}]
    shown = " ".join(response.text.split())
    shown = shown if len(shown) <= 200 else shown[:199] + "…"
    raise CallFailed(f"{decl.kind} '{decl.name}': the model did not follow the text protocol for tools "
                     f"({MAX_PROTOCOL_REASKS + 1} replies in a row could not be read): {reason}; "
                     f"its last reply: \"{shown}\"")


def text_messages(conversation: list[dict], specs) -> list[dict]:
    """The conversation as a model without tools reads it: the protocol in the system message,
    its own tool calls as the JSON it wrote, each round's results as one user message."""
    protocol = _PROTOCOL.format(tools="\n\n".join(_describe(spec) for spec in specs))
    head, rest = (conversation[0], conversation[1:]) if conversation and conversation[0].get("role") == "system" \
        else (None, conversation)
    system = f"{head['content'].rstrip()}\n\n{protocol}" if head is not None and head.get("content") else protocol
    messages: list[dict] = [{"role": "system", "content": system}]
    for message in rest:
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            calls = [{"tool": c["name"], "arguments": c["arguments"]} for c in message["tool_calls"]]
            messages.append({"role": "assistant",
                             "content": json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)})
        elif role == "tool":
            result = f"Result of {message.get('name') or 'the tool'}: {message.get('content')}"
            if messages[-1]["role"] == "user" and messages[-1].get("_results"):
                messages[-1] = {**messages[-1], "content": f"{messages[-1]['content']}\n\n{result}"}
            else:
                messages.append({"role": "user", "content": result, "_results": True})
        else:
            messages.append(message)
    return [{k: v for k, v in m.items() if k != "_results"} for m in messages]


def _describe(spec) -> str:
    return f"- {spec.name}: {spec.description}\n  arguments (JSON schema): " \
           f"{json.dumps(spec.parameters, ensure_ascii=False)}"


def read_reply(response: ChatResponse) -> ChatResponse:
    """The reply as the agent loop reads a native one: tool calls, or the answer's text."""
    text = response.text or ""
    try:
        value = parse_json_lenient(text)
    except (OutputParseError, RecursionError):
        if _LOOKS_LIKE_A_CALL.search(text):
            raise ProtocolError("it is not valid JSON") from None
        return response  # prose: the answer
    calls = _calls_in(value)
    if calls is None:
        if isinstance(value, dict) and "answer" in value and len(value) == 1:
            answer = value["answer"]
            response.text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
        return response
    response.tool_calls = [_tool_call(call, i) for i, call in enumerate(calls, 1)]
    response.text = ""
    return response


def _calls_in(value: Any) -> list | None:
    """The tool calls a parsed reply holds, or None when it holds none (it is an answer)."""
    if isinstance(value, dict) and "tool_calls" in value:
        calls = value["tool_calls"]
        if not isinstance(calls, list) or not calls:
            raise ProtocolError('"tool_calls" must be a list of {"tool": …, "arguments": …} objects')
        return calls
    if isinstance(value, dict) and _is_call(value):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, dict) and _is_call(v) for v in value):
        return value
    return None


def _is_call(value: dict) -> bool:
    return "tool" in value or ("name" in value and "arguments" in value)


def _tool_call(call: Any, n: int) -> ToolCall:
    if not isinstance(call, dict):
        raise ProtocolError(f"tool call {n} is not a JSON object")
    name = call.get("tool", call.get("name"))
    if not isinstance(name, str) or not name.strip():
        raise ProtocolError(f'tool call {n} has no tool name ("tool" must be a string)')
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):  # some models write the arguments as a JSON string, as the wire format does
        try:
            arguments = json.loads(arguments)
        except ValueError:
            raise ProtocolError(f"the arguments of '{name}' are a string that is not JSON") from None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ProtocolError(f'the arguments of \'{name}\' must be a JSON object, got {type(arguments).__name__}')
    return ToolCall(id=f"text_call_{n}", name=name.strip(), arguments=arguments)


def _trace_switch(run, decl, config, reason: str) -> None:
    """A step of its own in the trace: from here on this model's agent rounds go through text."""
    span = run.trace_start("protocol", decl.name, None, None, model=config.name, tool_protocol="text",
                           reason=run.secrets.mask(reason))
    run.trace_end(span, output="tools described in text for the rest of the run")
