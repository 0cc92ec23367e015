"""Prompt and agent calls: render, ask the model, parse, check, apply on_fail.

Layers, innermost first: a provider request under the model's limits
(concurrency, rate); transport retries with backoff (the model's `retry`);
the fallback models when those are spent; the cache around all of that;
then the prompt's `on_fail` policy when the reply does not parse, validate
or pass its checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from .. import ast
from ..checks.blocks import settings_problem
from ..formatter import expr_doc, flat
from ..providers import ChatRequest, ChatResponse, ProviderError, ToolsUnsupported
from ..providers.base import call_deadline
from ..types import MESSAGE, STR, ListType
from .boundary import Unrepresentable, admit, clean_text
from .cache import cache_key, model_settings
from .errors import CallFailed, FlowRuntimeError
from .evaluate import Evaluator, truthy
from .limits import limiter_for
from .outputs import OutputError, coerce_reply
from .spans import CURRENT_SPAN, STREAM_TO
from .templates import FILTER_CALLS, OUTPUT_FORMAT, OUTPUT_INSTRUCTIONS, TemplateRenderError, build_messages
from .transport import call_with_retries, terminal_notice, with_timeout

_REASK = ("Your previous answer could not be used: {error}\n"
          "Answer again, following the instructions exactly.")


@dataclass
class Policy:
    kind: str            # reask | retry | fallback | default | raise
    count: int = 0
    default: ast.Node | None = None


def policy_of(decl: ast.Decl) -> Policy:
    entry = decl.entry("on_fail")
    if entry is None:
        return Policy("raise")
    value = entry.value
    if isinstance(value, ast.Name):
        return Policy(value.id)
    name, arg = value.func.id, value.args[0].value
    if name == "default":
        return Policy("default", default=arg)
    return Policy(name, count=arg.value if isinstance(arg, ast.Literal) else 1)


class ReplyRejected(Exception):
    """The reply did not parse, validate or pass a check; ``reason`` says why."""

    def __init__(self, reason: str, reply: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


async def call_prompt(run, decl: ast.PromptDecl, args: dict[str, Any], returns) -> Any:
    messages, schema = await render(run, decl, args, returns)
    return await _ask_with_policy(run, decl, args, returns, messages, schema, tools=None)


async def render(run, decl: ast.Decl, args: dict[str, Any], returns) -> tuple[list[dict], dict | None]:
    """The chat messages of a prompt or agent call, and the output schema (None for `str`).

    The messages are the system text, then the `history:` messages, then the
    template's. A typed output's instructions (the reply's JSON shape) go where
    the template or the system text writes `{{ output_format }}`, and only
    there; otherwise after the template's text.
    """
    renderer = run.program.renderer_for(decl)
    schema = None if returns == STR else run.program.types.json_schema(returns)
    instructions = OUTPUT_INSTRUCTIONS(schema) if schema is not None else None
    variables = dict(args) if instructions is None else {**args, OUTPUT_FORMAT: instructions}
    texts: dict[str, str | None] = {"template": None, "system": None}
    placed = False
    token = FILTER_CALLS.set(_filter_calls(run, decl))
    try:
        for key in texts:
            source = _template_source(decl, key)
            if source is not None:
                placed = placed or (instructions is not None and renderer.reads(source, OUTPUT_FORMAT))
                texts[key] = await _render_text(renderer, decl, key, source, variables)
    finally:
        FILTER_CALLS.reset(token)
    user = texts["template"] or ""
    if instructions is not None and not placed:
        user = f"{user.rstrip()}\n\n{instructions}"
    return build_messages(texts["system"], user, await _history(run, decl, args)), schema


def _template_source(decl: ast.Decl, key: str) -> str | None:
    entry = decl.entry(key)
    if entry is None:
        return None
    if not isinstance(entry.value, (ast.Literal, ast.BlockString)) or not isinstance(entry.value.value, str):
        raise FlowRuntimeError(f"{decl.kind} '{decl.name}': {key} must be a string")
    return entry.value.value


async def _render_text(renderer, decl: ast.Decl, key: str, source: str, variables: dict[str, Any]) -> str:
    try:
        return clean_text(await renderer.render_async(source, variables))
    except TemplateRenderError as error:
        raise FlowRuntimeError(f"{decl.kind} '{decl.name}': {key} failed to render: {error}") from None


def _filter_calls(run, owner: ast.Decl):
    """How the templates of ``owner`` call a declared filter: as the flow calls one, named in
    ``owner``'s file, with the piped value first and the template's arguments after it."""
    async def call(name: str, values: list, named: dict[str, Any]) -> Any:
        decl = run.program.lookup(name, within=owner)
        if not isinstance(decl, ast.FilterDecl):  # the checker rules this out
            raise FlowRuntimeError(f"{owner.kind} '{owner.name}': no filter '{name}' for its template")
        return await run.call(decl, [None] * len(values) + list(named), [*values, *named.values()])
    return call


async def _history(run, decl: ast.Decl, args: dict[str, Any]) -> list[dict[str, str]]:
    """The `history:` messages, validated as list[Message] (a role outside system, user,
    assistant, tool stops the call)."""
    entry = decl.entry("history")
    if entry is None:
        return []
    value = await Evaluator(run, decl, dict(args)).eval(entry.value)
    messages = run.validate(ListType(MESSAGE), value, f"the history of {decl.kind} '{decl.name}'")
    return [{"role": m.role, "content": m.content} for m in messages]


class OnFail:
    """The `on_fail` policy of one prompt or agent call, applied to each rejected reply."""

    def __init__(self, run, decl: ast.Decl, args: dict[str, Any], returns, model) -> None:
        self.run, self.decl, self.args, self.returns = run, decl, args, returns
        self.policy = policy_of(decl)
        self.left = self.policy.count if self.policy.kind in ("reask", "retry") else 0
        self.model = model
        self.models = [model]      # the fallback policy swaps in the model's fallbacks
        self.use_cache = True      # retry(N) must not get the cached reply back

    async def handle(self, rejected: ReplyRejected, conversation: list[dict]) -> tuple[list[dict] | None, Any]:
        """(conversation to ask again with, None) or (None, the default value); else CallFailed."""
        kind = self.policy.kind
        if self.left > 0:
            self.left -= 1
            if kind == "reask":
                return [*conversation, {"role": "assistant", "content": rejected.reply},
                        {"role": "user", "content": _REASK.format(error=rejected.reason)}], None
            self.use_cache = False
            return conversation, None
        if kind == "fallback" and self.models == [self.model]:
            self.models = await self.run.fallbacks(self.model)
            if self.models:
                return conversation, None
        if kind == "default":
            evaluator = Evaluator(self.run, self.decl, dict(self.args))
            value = await evaluator.eval(self.policy.default)
            return None, self.run.validate(self.returns, value, f"the default of {self.decl.name}")
        raise CallFailed(f"{self.decl.kind} '{self.decl.name}': the model's answer was rejected: "
                         f"{rejected.reason}") from None


async def _ask_with_policy(run, decl, args, returns, messages, schema, tools) -> Any:
    on_fail = OnFail(run, decl, args, returns, await model_of(run, decl))
    conversation = list(messages)
    while True:
        response, commit = await ask_model(run, decl, on_fail.models, conversation, schema, tools,
                                           on_fail.use_cache)
        try:
            value = await accept(run, decl, args, returns, response.text)
        except ReplyRejected as rejected:
            if response.truncated:
                rejected.reason += " (the reply stopped at the token limit: raise max_tokens)"
            conversation, default = await on_fail.handle(rejected, conversation)
            if conversation is None:
                return default
            continue
        commit()
        return value


async def accept(run, decl, args, returns, text: str) -> Any:
    """The reply as a value of the output type, or ReplyRejected saying why not."""
    try:
        value = admit(coerce_reply(returns, text, run.program.types))
    except OutputError as error:
        raise ReplyRejected(error.message, text) from None
    except Unrepresentable as error:   # NaN in the JSON, say
        raise ReplyRejected(f"the reply cannot be used: {error}", text) from None
    checks = decl.entry("check")
    if checks is not None:
        evaluator = Evaluator(run, decl, {**args, "output": value})
        items = checks.value.items if isinstance(checks.value, ast.ListExpr) else [checks.value]
        for item in items:
            if not truthy(await evaluator.eval(item)):
                raise ReplyRejected(f"the check `{flat(expr_doc(item))}` failed", text)
    return value


async def model_of(run, decl: ast.Decl):
    """The evaluated model of a prompt or agent, with the prompt's own overrides."""
    entry = decl.entry("model")
    swap = run.options.every_model
    if swap is not None:
        model_decl = run.program.lookup(swap)
        if not isinstance(model_decl, ast.ModelDecl):
            raise FlowRuntimeError(f"'{swap}' is not a model declared in {run.program.path}")
        config = await run.model_config(model_decl)
    elif entry is None:
        config = await run.default_model(decl)
    else:
        model_decl = run.program.lookup(entry.value.id, within=decl)
        if not isinstance(model_decl, ast.ModelDecl):
            raise FlowRuntimeError(f"{decl.kind} '{decl.name}': '{entry.value.id}' is not a model")
        config = await run.model_config(model_decl)
    overrides = {k: (await Evaluator(run, decl).eval(decl.entry(k).value))
                 for k in ("temperature", "max_tokens", "timeout", "cache") if decl.entry(k) is not None}
    problem = settings_problem(decl.kind, decl.name, overrides)
    if problem is not None:
        raise FlowRuntimeError(problem)
    if overrides:
        from dataclasses import replace

        config = replace(config, **overrides)
    return config


async def ask_model(run, decl, models, messages, schema, tools, use_cache: bool = True):
    """Ask the first model that answers; returns the response and a function that caches it."""
    failures: list[str] = []
    chain = models
    if len(models) == 1 and models[0].fallback:  # the model's own fallback chain, after its retries are spent
        chain = [*models, *(await run.fallbacks(models[0]))]
    for config in chain:
        try:
            return await _ask_one(run, decl, config, messages, schema, tools, use_cache)
        except ToolsUnsupported as error:
            error.config = config  # the agent goes on in text with this model (tool_text.py), no fallback
            raise
        except ProviderError as error:
            failures.append(f"{config.name}: {error}")
    raise CallFailed(f"{decl.kind} '{decl.name}': no model answered ({'; '.join(failures)})")


async def _ask_one(run, decl, config, messages, schema, tools, use_cache: bool):
    # Only plain text streams: a typed reply is not worth showing before it is parsed.
    stream_to = STREAM_TO.get() if schema is None and tools is None else None
    request = ChatRequest(messages=messages, temperature=config.temperature, max_tokens=config.max_tokens,
                          json_schema=schema, schema_name=getattr(decl, "name", None), tools=tools,
                          options=dict(config.options), on_text=stream_to)
    run.count_call(decl.name)
    span = run.trace_start("model", config.name, CURRENT_SPAN.get(), None, model=config.model,
                           provider=config.provider, prompt=_prompt_info(run, decl) if run.trace else None,
                           temperature=config.temperature, max_tokens=config.max_tokens,
                           inputs={"messages": messages} if run.trace else None)
    cache = run.response_cache() if config.caches() and tools is None else None
    key = cache_key(config.provider, config.model, model_settings(config), messages, schema) if cache is not None else None
    if key is not None and use_cache:
        hit = cache.get(key, accept=_is_response_data)
        if hit is not None:
            response = ChatResponse(**hit)
            _end_model_span(run, span, response, cache_hit=True, attempts=[])
            return response, _nothing
    try:
        provider = run.provider_for(config, decl)
    except BaseException as error:
        run.trace_end(span, error=error)
        raise
    limiter = limiter_for(config)
    deadline = call_deadline(config)
    budget = run.budget
    if budget is not None:
        try:
            estimate = budget.start(config, messages, f"{decl.kind} '{decl.name}' on model '{config.name}'")
        except FlowRuntimeError as error:
            run.trace_end(span, error=error)
            raise

    try:
        response, attempts = await call_with_retries(partial(_send, limiter, provider, config, request, deadline),
                                                     retries=config.retry, timeout=None, max_wait=deadline,
                                                     on_retry=_restart_stream(stream_to),
                                                     notify=terminal_notice(config.name))
    except ProviderError as error:
        if budget is not None:
            budget.end(estimate, None)
        if span is not None:
            span.set(attempts=getattr(error, "attempts", []))
        run.trace_end(span, error=error)
        raise
    except BaseException as error:
        if budget is not None:
            budget.end(estimate, None)
        run.trace_end(span, error=error)
        raise
    if budget is not None:
        budget.end(estimate, response.cost)
    response = _clean_response(response)
    _end_model_span(run, span, response, cache_hit=False, attempts=attempts)
    return response, (partial(_commit, cache, key, run.secrets, response) if key is not None else _nothing)


# _ask_one's helpers are functions given their values (functools.partial), not closures: a
# closure would turn each of those values into a cell for the whole call, objects that the
# garbage collector walks while a thousand calls wait for their model's slot.

async def _send(limiter, provider, config, request, deadline: float) -> ChatResponse:
    """One attempt: a slot of the model's limits, then the call within its deadline."""
    async with limiter.slot():
        # The timeout covers the call itself: waiting for a slot or for the
        # rate window is the flow's own doing, not a slow model.
        return await with_timeout(provider.complete(config, request), deadline, default=not config.timeout)


def _commit(cache, key: str, secrets, response: ChatResponse) -> None:
    """Keep an accepted reply, masked with the run's secrets: a cache may be shared by many
    runs (a server's)."""
    cache.put(key, secrets.mask_data(_response_data(response)))


def _nothing() -> None:
    pass


def _restart_stream(stream_to):
    """Tell a streaming listener that the text so far is void: the call is tried again."""
    restart = getattr(stream_to, "__self__", None)
    restart = getattr(restart, "restart", None)
    return (lambda _attempt: restart()) if restart is not None else None


def _response_data(response: ChatResponse) -> dict:
    return {"text": response.text, "tokens_in": response.tokens_in, "tokens_out": response.tokens_out,
            "cost": response.cost, "model": response.model}


# What a cached reply holds: anything else in the row (a hand edit, a damaged file) makes it a miss.
_CACHED_FIELDS = {"text": (str,), "tokens_in": (int, type(None)), "tokens_out": (int, type(None)),
                  "cost": (int, float, type(None)), "model": (str, type(None))}


def _is_response_data(value: dict) -> bool:
    return "text" in value and all(k in _CACHED_FIELDS and isinstance(v, _CACHED_FIELDS[k])
                                   and not isinstance(v, bool) for k, v in value.items())


def _clean_response(response: ChatResponse) -> ChatResponse:
    """A reply as it enters the run: valid text everywhere (a provider may send a lone
    surrogate such as "\\ud800"), so traces, the cache and stdout can write it."""
    text = response.text if isinstance(response.text, str) else ""
    response.text = clean_text(text)
    if isinstance(response.model, str):
        response.model = clean_text(response.model)
    for call in response.tool_calls:
        call.name = clean_text(call.name)
        try:
            call.arguments = admit(call.arguments)
        except Unrepresentable:
            pass  # the arguments are validated against the tool's parameters, which says why
    return response


def _finish_reason(response: ChatResponse) -> str:
    if response.truncated:
        return "length"
    return "tool_calls" if response.tool_calls else "stop"


def _prompt_info(run, decl) -> dict | None:
    if not isinstance(decl, ast.PromptDecl):
        return None
    hashes = run.program.prompt_hashes(decl)
    return {"name": decl.name, "version": decl.effective_version, "hash": hashes.text, "model_hash": hashes.model}


def _end_model_span(run, span, response: ChatResponse, cache_hit: bool, attempts: list) -> None:
    if run.options.on_usage is not None:
        run.options.on_usage(response, cache_hit)
    if span is None:
        return
    span.set(tokens_in=response.tokens_in, tokens_out=response.tokens_out, cost=response.cost,
             cache_hit=cache_hit, retries=len(attempts), attempts=attempts,  # attempts lists the failed ones
             response_model=response.model, finish_reason=_finish_reason(response))
    if response.tool_calls:
        span.set(tool_calls=[{"name": c.name, "arguments": c.arguments} for c in response.tool_calls])
    run.trace_end(span, output=response.text)
