"""`provider: "openai"` and `provider: "ollama"`: OpenAI-compatible chat completions.

One wire format serves OpenAI, vLLM, llama.cpp's server, LM Studio, Together,
Ollama's /v1 and others: ``POST {base_url}/chat/completions``. ``ollama`` is
the same provider with a local default ``base_url`` and no key.

Faults become ProviderError: 408, 429 and 5xx, dropped connections, timeouts
and replies that cannot be read (malformed JSON, a stream cut before
``[DONE]``, no content) are retryable; a refused key, a bad request, a reply
withheld by a content filter, an HTML page where JSON was due or a reply
larger than ``MAX_REPLY_BYTES`` once decoded is not. Every call has a total
deadline (the model's `timeout:`, else 120 s) over the whole reply, streamed
or not, besides httpx's per-read timeout. The key is read from the
environment variable the model names (``api_key_env``) and never appears in
an error message.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import email.utils
import json
import os
import re
import threading
import time
import weakref
from typing import Any, AsyncIterator, Callable

import httpx

from ..runtime.deadlines import deadline
from . import register_provider
from .base import (ChatRequest, ChatResponse, ModelConfig, Provider, ProviderError, ToolCall, ToolsUnsupported,
                   call_deadline, valid_text)
from .costs import CostError, cost_of
from .http_body import ACCEPT_ENCODING, MAX_ERROR_BYTES, MAX_REPLY_BYTES, BodyError, aiter_body, read_body

__all__ = ["OpenAIProvider", "OllamaProvider", "OPENAI_BASE_URL", "OLLAMA_BASE_URL"]

OPENAI_BASE_URL = "https://api.openai.com/v1"
OLLAMA_BASE_URL = "http://localhost:11434/v1"

# fmflow's own option keys: read here, never sent to the server.
_OWN_OPTIONS = frozenset({"cost"})
# Body fields the provider owns; an option cannot replace them.
_RESERVED = frozenset({"model", "messages", "stream", "stream_options"})
_MAX_MESSAGE = 300
# Connecting gets generous time (a cold local server) but never more than the
# call's deadline; each read may take the whole deadline (a CPU model may think
# for minutes before its first byte), and the deadline bounds the whole reply.
_CONNECT_TIMEOUT = 30.0


class OpenAIProvider(Provider):
    name = "openai"
    supports_structured_output = True
    default_base_url = OPENAI_BASE_URL
    default_key_env: str | None = "OPENAI_API_KEY"

    def __init__(self) -> None:
        # An httpx client is bound to the event loop it first ran on, and every
        # flow.run() is a new loop: one pooled client per (loop, base_url), and
        # a loop that is garbage-collected takes its clients with it.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = \
            weakref.WeakKeyDictionary()
        self._lock = threading.Lock()  # runs in several threads may share the provider
        # (base_url, model) pairs whose server rejected response_format: later
        # calls go prompt-only at once instead of paying a 400 every time.
        self._no_structured: set[tuple[str, str]] = set()

    # ------------------------------------------------------------ the call
    async def complete(self, config: ModelConfig, request: ChatRequest) -> ChatResponse:
        base_url = (config.base_url or self.default_base_url).rstrip("/")
        key_env, key = self._key(config)  # before any request: a missing key is no transport fault
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        body = _body(config, request)
        pair = (base_url, body["model"])
        structured = request.json_schema is not None and pair not in self._no_structured
        if structured:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": _schema_name(request.schema_name), "schema": request.json_schema, "strict": True}}
        call = _Call(self._client(base_url), config, base_url, headers, key, key_env, request)
        try:
            return await call.send(body)
        except ProviderError as error:
            _raise_if_tools_refused(request, error)
            if not structured or error.status != 400:
                raise
            # The server cannot do structured output (older vLLM, llama.cpp,
            # many proxies). The prompt already asks for JSON, so ask again
            # without response_format; the reply is still parsed and checked.
            said_so = any(w in str(error).lower() for w in ("response_format", "json_schema"))
            if said_so:
                self._no_structured.add(pair)
            body.pop("response_format")
            try:
                response = await call.send(body)
            except ProviderError as again:
                _raise_if_tools_refused(request, again)
                raise
            self._no_structured.add(pair)  # the 400 was about response_format after all
            return response

    def _key(self, config: ModelConfig) -> tuple[str | None, str | None]:
        env = config.api_key_env or self.default_key_env
        if env is None:
            return None, None
        key = os.environ.get(env)
        if not key:
            raise ProviderError(f"environment variable {env} is not set (model '{config.name}' needs it; "
                                f"set it or name another with api_key_env)")
        return env, key

    def _client(self, base_url: str) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            clients = self._clients.setdefault(loop, {})
            client = clients.get(base_url)
            if client is None or client.is_closed:
                client = clients[base_url] = httpx.AsyncClient(
                    timeout=httpx.Timeout(600.0, connect=_CONNECT_TIMEOUT),  # each call passes its own
                    headers={"Accept-Encoding": ACCEPT_ENCODING})  # only what http_body decodes
            return client

    async def aclose(self) -> None:
        """Close the clients of this loop; those of other running loops are closed on their own loop."""
        current = asyncio.get_running_loop()
        with self._lock:
            entries = list(self._clients.items())
            for loop, _ in entries:
                if loop is current or loop.is_closed() or loop.is_running():
                    del self._clients[loop]
        for loop, clients in entries:
            for client in clients.values():
                if loop is current:
                    await client.aclose()
                elif loop.is_running() and not loop.is_closed():
                    asyncio.run_coroutine_threadsafe(client.aclose(), loop)
                # A closed loop's sockets cannot be awaited any more; they go with the loop.


    async def release_loop(self) -> None:
        current = asyncio.get_running_loop()
        with self._lock:
            clients = self._clients.pop(current, {})
        for client in clients.values():
            await client.aclose()


class OllamaProvider(OpenAIProvider):
    name = "ollama"
    supports_structured_output = True  # Ollama's /v1 honours json_schema; the 400 fallback covers older ones
    default_base_url = OLLAMA_BASE_URL
    default_key_env = None  # a local server needs no key; api_key_env still names one for a proxy


def _raise_if_tools_refused(request: ChatRequest, error: ProviderError) -> None:
    """A 400 that names tools (or tool_choice, function calling) when tools were sent: the server
    or model cannot take them, so the agent goes on with tools described in text."""
    if request.tools and error.status == 400 and _NAMES_TOOLS.search(str(error)):
        raise ToolsUnsupported(f"{error} (the server does not take tools)", status=400) from None


_NAMES_TOOLS = re.compile(r"tool|function.?call", re.IGNORECASE)


# ---------------------------------------------------------------- requests

def _schema_name(name: str | None) -> str:
    # OpenAI accepts [a-zA-Z0-9_-]{1,64} here; a prompt name may carry "@2" or dots.
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in (name or "output"))
    return cleaned[:64] or "output"


def _body(config: ModelConfig, request: ChatRequest) -> dict[str, Any]:
    model = config.model or config.name
    body: dict[str, Any] = {"model": model, "messages": [_wire_message(m) for m in request.messages]}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        # OpenAI's reasoning models (o1, o3, o4-mini…) refuse max_tokens and want the new name.
        reasoning = model[:1] == "o" and model[1:2].isdigit()
        body["max_completion_tokens" if reasoning else "max_tokens"] = request.max_tokens
    if request.tools:
        body["tools"] = [{"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": t.parameters}} for t in request.tools]
    for key, value in _options(config, request).items():
        if key not in _OWN_OPTIONS and key not in _RESERVED:
            body[key] = value  # provider extras as written: top_p, seed, stop, extra vLLM fields…
    if request.on_text is not None:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # else a stream reports no tokens
    return body


def _options(config: ModelConfig, request: ChatRequest) -> dict[str, Any]:
    # The runtime copies the model's options into each request; a request built
    # by hand may carry none, so the model block's own still count.
    return {**config.options, **request.options}


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    """An fmflow message in OpenAI's shape (agents keep tool calls with `arguments` as a dict)."""
    role = message.get("role")
    if role == "tool":
        return {"role": "tool", "tool_call_id": message.get("tool_call_id"),
                "content": str(message.get("content") or "")}
    wire = {"role": role, "content": message.get("content") or ""}
    if message.get("name") and role in ("user", "system"):
        wire["name"] = message["name"]
    if role == "assistant" and message.get("tool_calls"):
        wire["tool_calls"] = [call if "function" in call else {
            "id": call.get("id"), "type": "function",
            "function": {"name": call.get("name"), "arguments": _arguments_text(call.get("arguments"))}}
            for call in message["tool_calls"]]
    return wire


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments or {}, ensure_ascii=False)


# ----------------------------------------------------------------- one call

class _Call:
    """One request to one server, sent once or twice (the structured-output fallback)."""

    def __init__(self, client: httpx.AsyncClient, config: ModelConfig, base_url: str, headers: dict[str, str],
                 key: str | None, key_env: str | None, request: ChatRequest) -> None:
        self.client, self.config, self.base_url, self.headers = client, config, base_url, headers
        self.key, self.key_env, self.on_text = key, key_env, request.on_text
        self.options = _options(config, request)

    async def send(self, body: dict[str, Any]) -> ChatResponse:
        seconds = call_deadline(self.config)
        try:
            # The whole reply, every byte of a stream included, within the deadline:
            # httpx's read timeout alone lets a server that drips a byte a second
            # keep the call alive forever.
            async with deadline(seconds):
                data = await self._exchange(body, seconds)
        except TimeoutError:
            raise ProviderError(f"{self.base_url} gave no complete reply within {seconds:g}s",
                                retryable=True) from None
        except httpx.TimeoutException as exc:
            raise ProviderError(f"timed out talking to {self.base_url} ({type(exc).__name__})",
                                retryable=True) from None
        except httpx.TransportError as exc:  # refused, DNS, reset, a connection dropped mid-reply
            detail = f": {self._clip(str(exc))}" if str(exc) else ""
            raise ProviderError(f"could not reach {self.base_url} ({type(exc).__name__}{detail})",
                                retryable=True) from None
        except BodyError as error:  # a reply too large once decoded, or one that cannot be decoded
            raise ProviderError(f"{self.base_url}: {error}") from None
        return self._response(data, body["model"])

    async def _exchange(self, body: dict[str, Any], seconds: float) -> Any:
        """The reply's JSON body (a stream merged into one), or ProviderError."""
        url = f"{self.base_url}/chat/completions"
        timeout = httpx.Timeout(seconds, connect=min(_CONNECT_TIMEOUT, seconds))
        async with self.client.stream("POST", url, json=body, headers=self.headers, timeout=timeout) as response:
            if response.status_code >= 400:
                raise self._http_error(response, await read_body(response, MAX_ERROR_BYTES, truncate=True))
            if _is_html(response):
                raise self._html_error(await read_body(response, MAX_ERROR_BYTES, truncate=True))
            if body.get("stream"):
                return await _read_stream(response, self.on_text or (lambda _text: None), self.base_url)
            return self._json(await read_body(response, MAX_REPLY_BYTES))

    def _json(self, raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as error:  # RecursionError: nested thousands deep
            what = "JSON nested too deeply" if isinstance(error, RecursionError) else "a body that is not JSON"
            text = raw[:_MAX_MESSAGE * 2].decode("utf-8", "replace")
            raise ProviderError(f"{self.base_url} answered with {what}: {self._clip(text)!r}",
                                retryable=True) from None

    def _html_error(self, raw: bytes) -> ProviderError:
        # A web page where the API should be: a wrong base_url (a UI, a login or
        # captive portal), not a fault that trying again would fix.
        text = raw.decode("utf-8", "replace")
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        shown = f" titled {self._clip(title.group(1))!r}" if title else ""
        return ProviderError(f"{self.base_url} answered with an HTML page{shown}, not JSON: check base_url "
                             f"(an OpenAI-compatible API usually ends in /v1)")

    def _response(self, data: Any, asked: str) -> ChatResponse:
        choice, message = self._choice(data)
        content = message.get("content")
        if isinstance(content, list):  # some servers send content parts
            content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
        calls = self._tool_calls(message.get("tool_calls") or [])
        if not isinstance(content, str) and not calls:
            refusal = message.get("refusal")
            if isinstance(refusal, str) and refusal:
                raise ProviderError(f"{self.base_url}: the model refused: {self._clip(refusal)}")
            finish = choice.get("finish_reason")
            raise ProviderError(f"{self.base_url}: the model returned no content (content: "
                                f"{json.dumps(content) if content is None else type(content).__name__}, no tool "
                                f"calls{f', finish_reason: {finish}' if finish else ''})", retryable=True)
        usage = _dict(data.get("usage"))
        tokens_in, tokens_out = (v if isinstance(v, int) else None
                                 for v in (usage.get("prompt_tokens"), usage.get("completion_tokens")))
        answered = data.get("model") if isinstance(data.get("model"), str) else asked
        try:
            cost = cost_of(self.options, [asked, answered], tokens_in, tokens_out,
                           f"model '{self.config.name}'")
        except CostError as error:
            raise ProviderError(str(error)) from None
        return ChatResponse(text=valid_text(content) if isinstance(content, str) else "", tokens_in=tokens_in,
                            tokens_out=tokens_out, cost=cost, tool_calls=calls, model=answered,
                            truncated=choice.get("finish_reason") == "length")

    def _choice(self, data: Any) -> tuple[dict, dict]:
        """The first choice of a reply and its message, or ProviderError saying what is missing."""
        if not isinstance(data, dict):
            raise ProviderError(f"{self.base_url} answered with JSON that is not an object: "
                                f"{self._clip(json.dumps(data))}", retryable=True)
        choices = data.get("choices")
        if not choices and data.get("error"):  # some proxies answer 200 with an error body
            raise ProviderError(f"{self.base_url} answered with an error: {self._clip(_error_text(data['error']))}",
                                retryable=True)
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ProviderError(f"{self.base_url} answered without choices: {self._clip(json.dumps(data))}",
                                retryable=True)
        choice = choices[0]
        if choice.get("finish_reason") == "content_filter":
            raise ProviderError(f"{self.base_url}: the server's content filter withheld the reply "
                                f"(finish_reason: content_filter)")
        message = choice.get("message")
        if not isinstance(message, dict):
            raise ProviderError(f"{self.base_url} answered a choice without a message: "
                                f"{self._clip(json.dumps(choice))}", retryable=True)
        return choice, message

    def _tool_calls(self, calls: list[Any]) -> list[ToolCall]:
        parsed = []
        for i, call in enumerate(calls):
            call = call if isinstance(call, dict) else {}
            function = call.get("function") or {}
            name, arguments = function.get("name"), function.get("arguments")
            try:
                if isinstance(arguments, str):
                    arguments = json.loads(arguments) if arguments.strip() else {}
                if not isinstance(arguments, dict):
                    raise ValueError(f"expected an object, got {type(arguments).__name__}")
                name, arguments = valid_text(name), valid_text(arguments)
            except RecursionError:
                raise ProviderError(f"{self.base_url}: tool call '{name}' has arguments nested too deeply",
                                    retryable=True) from None
            except ValueError as exc:
                # A model that emits broken JSON often does better on a second try.
                raise ProviderError(f"{self.base_url}: tool call '{name}' has arguments that are not a JSON "
                                    f"object ({exc})", retryable=True) from None
            if not name:
                raise ProviderError(f"{self.base_url}: tool call {i + 1} has no function name", retryable=True)
            parsed.append(ToolCall(id=str(call.get("id") or f"call_{i + 1}"), name=name, arguments=arguments))
        return parsed

    def _http_error(self, response: httpx.Response, raw: bytes) -> ProviderError:
        status = response.status_code
        if status in (401, 403):
            # The server's own text may quote part of the key: leave it out.
            hint = (f"check the environment variable {self.key_env}" if self.key_env
                    else "the server wants a key; name its environment variable with api_key_env")
            return ProviderError(f"{self.base_url} was refused ({status}): {hint}", status=status)
        retryable = status in (408, 429) or status >= 500
        message = self._clip(_server_message(response, raw))
        return ProviderError(f"{self.base_url} answered {status}: {message}", retryable=retryable, status=status,
                             retry_after=_retry_after(response.headers.get("retry-after")) if retryable else None)

    def _clip(self, text: str) -> str:
        if self.key:
            text = text.replace(self.key, "***")
        text = " ".join(text.split())
        return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE - 1] + "…"


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}  # odd servers: a wrong shape reads as absent


def _server_message(response: httpx.Response, raw: bytes) -> str:
    """The error text of a reply: OpenAI's {"error": {"message"}}, llama.cpp/Ollama's {"error": "…"}, or the body."""
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return text or response.reason_phrase
    if isinstance(data, dict) and data.get("error"):
        return _error_text(data["error"])
    if isinstance(data, dict) and data.get("detail"):  # FastAPI-based servers (vLLM)
        return str(data["detail"])
    return text


def _error_text(error: Any) -> str:
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return error if isinstance(error, str) else json.dumps(error)


def _is_html(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").split(";")[0].strip().lower() in ("text/html",
                                                                                      "application/xhtml+xml")


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# ------------------------------------------------------------------ streams

async def _lines(response: httpx.Response) -> AsyncIterator[str]:
    """The body's lines, decoded as UTF-8, within MAX_REPLY_BYTES for the whole stream.

    Not httpx's aiter_lines: it decodes each network chunk whole (a gzip bomb)
    and keeps a line without end in memory however long it grows.
    """
    text = codecs.getincrementaldecoder("utf-8")("replace")
    pending: list[str] = []
    async for piece in aiter_body(response, MAX_REPLY_BYTES):
        parts = text.decode(piece).split("\n")
        for part in parts[:-1]:
            yield ("".join(pending) + part).rstrip("\r")
            pending = []
        pending.append(parts[-1])
    last = "".join(pending) + text.decode(b"", final=True)
    if last:
        yield last.rstrip("\r")


async def _sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The `data` of each server-sent event (several data lines join with newlines)."""
    lines: list[str] = []
    async for line in _lines(response):
        if not line:  # a blank line ends an event
            if lines:
                yield "\n".join(lines)
                lines = []
        elif not line.startswith(":"):  # ":" lines are keep-alive comments
            field, _, value = line.partition(":")
            if field == "data":
                lines.append(value[1:] if value.startswith(" ") else value)
    if lines:
        yield "\n".join(lines)


async def _read_stream(response: httpx.Response, on_text: Callable[[str], None], base_url: str) -> dict:
    """A streamed reply as the body a non-streamed one would have had; on_text sees each piece."""
    merged = _StreamMerge()
    # aclosing: leaving at [DONE] finalizes the generator now, not whenever it is collected.
    async with contextlib.aclosing(_sse_data(response)) as events:
        async for data in events:
            if data.strip() == "[DONE]":
                return merged.body()
            try:
                chunk = json.loads(data)
            except (ValueError, RecursionError):
                raise ProviderError(f"malformed stream chunk from {base_url}: {data[:_MAX_MESSAGE]!r}",
                                    retryable=True) from None
            if isinstance(chunk, dict) and chunk.get("error"):  # a server failing mid-stream says so in-band
                raise ProviderError(f"{base_url} failed mid-stream: {_error_text(chunk['error'])[:_MAX_MESSAGE]}",
                                    retryable=True)
            text = merged.add(chunk)
            if text:
                on_text(valid_text(text))
    # Without [DONE] we cannot tell a finished answer from a cut one.
    raise ProviderError(f"truncated stream from {base_url}: it ended before [DONE]", retryable=True)


class _StreamMerge:
    """Accumulates stream chunks: content pieces, tool-call pieces by index, the last usage."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.usage: dict | None = None
        self.model: str | None = None
        self.choices = 0
        self.finish_reason: str | None = None

    def add(self, chunk: Any) -> str:
        if not isinstance(chunk, dict):
            return ""
        self.model = chunk.get("model") or self.model
        self.usage = chunk.get("usage") or self.usage  # include_usage puts it on the last chunk
        choices = chunk.get("choices") or []
        if choices and isinstance(choices[0], dict) and choices[0].get("finish_reason"):
            self.finish_reason = choices[0]["finish_reason"]
        delta = _dict(choices[0].get("delta")) if choices and isinstance(choices[0], dict) else {}
        self.choices += bool(choices)
        for piece in filter(lambda p: isinstance(p, dict), delta.get("tool_calls") or []):
            call = self.calls.setdefault(piece.get("index", len(self.calls)), {"id": None, "name": "", "args": ""})
            call["id"] = call["id"] or piece.get("id")
            function = piece.get("function") or {}
            name = function.get("name") or ""
            if name != call["name"]:  # some servers repeat the whole name in every piece
                call["name"] += name
            call["args"] += function.get("arguments") or ""
        content = delta.get("content")
        if isinstance(content, str):
            self.text.append(content)  # "" counts: the server did send content
            return content
        return ""

    def body(self) -> dict[str, Any]:
        calls = [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["args"]}}
                 for _, c in sorted(self.calls.items())]
        # No content piece at all is a reply without content, as `content: null` is.
        message = {"role": "assistant", "content": "".join(self.text) if self.text else None, "tool_calls": calls}
        body: dict[str, Any] = {"model": self.model, "usage": self.usage}
        body["choices"] = [{"message": message, "finish_reason": self.finish_reason}] if self.choices else []
        return body


register_provider("openai", OpenAIProvider)
register_provider("ollama", OllamaProvider)
