"""Offline providers: `provider: "replay"` for flow files, ScriptedProvider for Python tests.

A replay model answers from its `options`, one of:

- ``responses: [...]`` — scripted answers in order, one per call. An item is
  the reply text, or an object ``{text?, json?, tool_calls?: [{name,
  arguments}], error?: {status, message, retry_after?} | {kind: "timeout"},
  delay?: seconds, tokens_in?, tokens_out?}``. ``cycle: true`` starts over
  at the end; otherwise running out is an error.
- ``file: "rec.jsonl"`` — recorded exchanges, one JSON object a line,
  ``{"request": {"messages": [...]}, "response": {...item...}}``; a request is
  answered by the first line whose messages are exactly equal.
- ``echo: true`` — replies with the last user message (also the model name
  ``echo`` with no options, so ``--model replay:echo`` works).

Token counts not given in the item are whitespace-separated words of the
request and the reply: an approximation, good enough to exercise budgets.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import threading
from typing import Any, Awaitable, Callable

from . import register_provider
from .base import ChatRequest, ChatResponse, ModelConfig, Provider, ProviderError, ToolCall, valid_text

__all__ = ["ReplayProvider", "ScriptedProvider", "build_response", "closest_difference"]

# `cost` and `model` too, so a recording may keep everything a real reply carried.
_ITEM_KEYS = {"text", "json", "tool_calls", "error", "delay", "tokens_in", "tokens_out", "cost", "model"}


def _words(text: str) -> int:
    return len(text.split())


def _request_words(request: ChatRequest) -> int:
    return sum(_words(str(m.get("content") or "")) for m in request.messages)


def _error(spec: Any, where: str) -> ProviderError:
    """The ProviderError a scripted `error:` stands for."""
    if isinstance(spec, str):
        return ProviderError(spec)
    if not isinstance(spec, dict):
        return ProviderError(f"{where}: `error` must be a string or an object, got {spec!r}")
    kind, status = spec.get("kind"), spec.get("status")
    if "retryable" in spec:
        retryable = bool(spec["retryable"])
    elif kind in ("timeout", "connection"):
        retryable = True  # what a real client's timeout or dropped connection becomes
    elif isinstance(status, int):
        retryable = status in (408, 429) or status >= 500
    else:
        retryable = False
    default = f"timed out ({where})" if kind == "timeout" else f"HTTP {status} ({where})" if status else where
    return ProviderError(str(spec.get("message") or default), retryable=retryable,
                         status=status if isinstance(status, int) else None, retry_after=spec.get("retry_after"))


def _tool_calls(specs: Any, where: str) -> list[ToolCall]:
    if not isinstance(specs, list):
        raise ProviderError(f"{where}: `tool_calls` must be a list of {{name, arguments}}")
    calls = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ProviderError(f"{where}: tool call {i + 1} needs a `name`")
        args = spec.get("arguments", {})
        if isinstance(args, str):  # recorded OpenAI-style calls carry arguments as JSON text
            try:
                args = json.loads(args)
            except ValueError as exc:
                raise ProviderError(f"{where}: tool call '{spec['name']}' has arguments that are not JSON: {exc}")
        calls.append(ToolCall(id=str(spec.get("id") or f"call_{i + 1}"), name=spec["name"], arguments=args))
    return calls


async def build_response(item: Any, config: ModelConfig, request: ChatRequest, *, where: str,
                         sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> ChatResponse:
    """Turn one scripted item (text or object, see the module doc) into a reply or a raised error."""
    if isinstance(item, str):
        item = {"text": item}
    if not isinstance(item, dict):
        raise ProviderError(f"{where} must be a string or an object, got {type(item).__name__}")
    unknown = sorted(set(item) - _ITEM_KEYS)
    if unknown:  # a typo like `txt:` would otherwise reply "" silently
        raise ProviderError(f"{where} has unknown key '{unknown[0]}' (known: {', '.join(sorted(_ITEM_KEYS))})")
    if item.get("delay"):
        await sleep(float(item["delay"]))  # lets tests script a slow model that hits `timeout:`
    if "error" in item:
        raise _error(item["error"], where)
    # `json:` spares flow files from escaping structured answers inside a string.
    text = valid_text(json.dumps(item["json"]) if "json" in item else str(item.get("text") or ""))
    calls = _tool_calls(item["tool_calls"], where) if "tool_calls" in item else []
    tokens_in = item.get("tokens_in", _request_words(request))
    tokens_out = item.get("tokens_out", _words(text))
    return ChatResponse(text=text, tokens_in=tokens_in, tokens_out=tokens_out, cost=item.get("cost"),
                        tool_calls=calls, model=item.get("model") or config.model or config.name)


def _preview(message: Any) -> str:
    if not isinstance(message, dict):
        return repr(message)[:60]
    content = " ".join(str(message.get("content") or "").split())
    return f"{message.get('role', '?')}: {content[:60]!r}"


class _Recording:
    """A recorded .jsonl file: exact request → response lookup."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[list[Any]] = []
        self.index: dict[str, Any] = {}
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    messages, response = entry["request"]["messages"], entry["response"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise ProviderError(f"{path}:{n}: not a {{\"request\": {{\"messages\": …}}, "
                                        f"\"response\": …}} line ({exc})")
                self.requests.append(messages)
                self.index.setdefault(json.dumps(messages, sort_keys=True), response)  # first line wins

    def lookup(self, messages: list[Any]) -> Any:
        key = json.dumps(messages, sort_keys=True, default=str)
        if key in self.index:
            return self.index[key]
        raise ProviderError(self._mismatch(messages))

    def _mismatch(self, messages: list[Any]) -> str:
        return f"no recorded request in '{self.path}' matches: {closest_difference(messages, self.requests)}"


def closest_difference(messages: list[Any], recorded: list[list[Any]]) -> str:
    """Where ``messages`` parts from the recorded request that agrees with it longest."""
    def common(rec: list[Any]) -> int:
        n = 0
        while n < min(len(rec), len(messages)) and rec[n] == messages[n]:
            n += 1
        return n
    if not recorded:
        return "nothing is recorded"
    best = max(recorded, key=common)
    i = common(best)
    if i < len(messages):
        got = f"message {i + 1} ({_preview(messages[i])})"
        had = f"recorded {_preview(best[i])}" if i < len(best) else "the closest recording ends before it"
        return f"first difference at {got}; {had}"
    return f"the request stops after {i} messages, the closest recording has {len(best)}"


class ReplayProvider(Provider):
    name = "replay"

    def __init__(self, *, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self._sleep = sleep
        # Positions per model declaration, shared by every run in the process so
        # that a scripted failure is consumed once, not once per run.
        self._positions: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()  # runs may share the provider from several threads' loops
        self._recordings: dict[str, tuple[int, _Recording]] = {}

    def reset(self, key: tuple[str, str] | None = None) -> None:
        """Start scripted responses over (for one model declaration, or all)."""
        with self._lock:
            if key is None:
                self._positions.clear()
            else:
                self._positions.pop(key, None)

    async def complete(self, config: ModelConfig, request: ChatRequest) -> ChatResponse:
        opts = config.options
        if not opts and config.model == "echo":  # `--model replay:echo`: a model with no block to hold options
            opts = {"echo": True}
        modes = [k for k in ("responses", "file", "echo") if opts.get(k) is not None and opts.get(k) is not False]
        if len(modes) != 1:
            what = "has none of" if not modes else f"has {' and '.join(modes)}; give only one of"
            raise ProviderError(
                f"replay model '{config.name}' {what} its options: `responses: [\"reply\", …]` (answers in "
                f"order), `file: \"recording.jsonl\"` (recorded requests and replies) or `echo: true`")
        if modes[0] == "responses":
            item, where = self._next(config)
        elif modes[0] == "file":
            item = self._recording(config).lookup(request.messages)
            where = f"replay model '{config.name}' recorded response"
        else:
            users = [m for m in request.messages if m.get("role") == "user"]
            item, where = str(users[-1].get("content") or "") if users else "", f"replay model '{config.name}'"
        response = await build_response(item, config, request, where=where, sleep=self._sleep)
        if request.on_text is not None:  # stream word by word, like a server would
            for piece in re.findall(r"\s*\S+", response.text):
                request.on_text(piece)
        return response

    def _next(self, config: ModelConfig) -> tuple[Any, str]:
        items = config.options["responses"]
        if not isinstance(items, list):
            raise ProviderError(f"replay model '{config.name}': `responses` must be a list")
        with self._lock:  # take the position before any await so concurrent calls get distinct items
            n = self._positions.get(config.key, 0)
            self._positions[config.key] = n + 1
        if config.options.get("cycle") and items:
            n %= len(items)
        if n >= len(items):
            raise ProviderError(f"replay model '{config.name}' has no more responses ({len(items)} given)")
        return items[n], f"replay model '{config.name}' response {n + 1}"

    def _recording(self, config: ModelConfig) -> _Recording:
        path = str(config.options["file"])
        if not os.path.isabs(path):
            path = os.path.join(os.path.dirname(config.source) if config.source else os.getcwd(), path)
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError as exc:
            raise ProviderError(f"replay model '{config.name}': cannot read recording '{path}' ({exc.strerror})")
        cached = self._recordings.get(path)
        if cached is None or cached[0] != mtime:  # re-read a file re-recorded while the process lives
            cached = self._recordings[path] = (mtime, _Recording(path))
        return cached[1]


Outcome = Any  # ChatResponse | str | dict (a replay item) | BaseException | an awaitable of these


class ScriptedProvider(Provider):
    """A provider for Python tests: answers from a list or a function, records what it was asked.

    ``script`` is a list of outcomes (used in order; ``cycle=True`` repeats it)
    or a callable ``(config, request) -> outcome`` (sync or async). An outcome
    is a ChatResponse, reply text, a replay item dict, or an exception to raise.
    ``on_call(config, request)`` is awaited at the start of every call, while
    the call counts as in flight: tests block there on an asyncio.Event to
    observe how many calls run at once.
    """

    name = "scripted"

    def __init__(self, script: list[Outcome] | Callable[[ModelConfig, ChatRequest], Outcome], *,
                 cycle: bool = False,
                 on_call: Callable[[ModelConfig, ChatRequest], Awaitable[Any]] | None = None) -> None:
        self.script = script
        self.cycle = cycle
        self.on_call = on_call
        self.requests: list[ChatRequest] = []
        self.calls: list[tuple[ModelConfig, ChatRequest]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def complete(self, config: ModelConfig, request: ChatRequest) -> ChatResponse:
        n = len(self.requests)
        self.requests.append(request)
        self.calls.append((config, request))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.on_call is not None:
                await self.on_call(config, request)
            outcome = self._outcome(n, config, request)
            while inspect.isawaitable(outcome):
                outcome = await outcome
            if isinstance(outcome, type) and issubclass(outcome, BaseException):
                outcome = outcome()
            if isinstance(outcome, BaseException):
                raise outcome
            if isinstance(outcome, ChatResponse):
                return outcome
            return await build_response(outcome, config, request, where=f"scripted response {n + 1}")
        finally:
            self.in_flight -= 1

    def _outcome(self, n: int, config: ModelConfig, request: ChatRequest) -> Outcome:
        if callable(self.script):
            return self.script(config, request)
        if self.cycle and self.script:
            n %= len(self.script)
        if n >= len(self.script):
            raise ProviderError(f"scripted model '{config.name}' has no more responses ({len(self.script)} given)")
        return self.script[n]


register_provider("replay", ReplayProvider)
