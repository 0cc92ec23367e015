"""`provider: "langchain"`: any LangChain chat model answers a flow's prompts and agents.

The model's `name:` says where the chat model comes from, one of:

- ``"module:factory"`` — ``module`` is imported with the flow file's folder
  first on the path (as for ``python("…")`` tools), and ``factory`` is called
  with no arguments to make the model; an attribute that already is a chat
  model (any LangChain ``Runnable``) is used as it is. It is made once per
  (folder, name) and shared by every run in the process.
- a name given to ``register_chat_model("name", model)`` from Python, for a
  model built in code (``fmflow.providers.langchain.register_chat_model``).
  A registered name is looked up first.

How a request maps onto the model:

- messages become ``SystemMessage`` / ``HumanMessage`` / ``AIMessage`` (with
  its ``tool_calls``) / ``ToolMessage``;
- ``temperature`` and ``max_tokens`` are set only when the model class
  declares a field of that name (ChatOpenAI, ChatAnthropic, … do), on a copy
  of the model; a model without such a field ignores them silently, because
  an unknown keyword reaches some providers' HTTP payload and fails there;
- the model's ``options: {…}`` are passed as keyword arguments of
  ``ainvoke``/``astream`` as they are (``stop``, ``seed``, … as the model
  supports them);
- an agent's tools are bound with ``model.bind_tools([...])`` as OpenAI-style
  function schemas; a model without tool calling is a ProviderError;
- structured output is left to the prompt text (the runtime asks for JSON
  and parses it), so ``supports_structured_output`` is False;
- when the request streams (``on_text``), ``astream`` is used and each
  chunk's text is forwarded.

The reply's text is its string content or the text parts of its content
blocks joined; its ``tool_calls`` become ToolCalls; ``usage_metadata`` gives
the token counts.

Errors: a LangChain or client exception becomes ProviderError. Usage errors
(TypeError, ValueError and its subclasses such as pydantic's validation and
LangChain's output parser errors, KeyError, AttributeError,
NotImplementedError, ImportError) and HTTP statuses other than 408, 429 and
5xx are not retryable; everything else — timeouts, dropped connections,
rate limits, server errors and unknown exceptions — is.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from . import register_provider
from .base import (ChatRequest, ChatResponse, ModelConfig, Provider, ProviderError, ToolCall, ToolsUnsupported,
                   valid_text)

__all__ = ["LangChainProvider", "register_chat_model", "unregister_chat_model"]

_registered: dict[str, Any] = {}
_registry_lock = threading.Lock()


def register_chat_model(name: str, model: Any) -> None:
    """Make ``model`` (a LangChain chat model or any Runnable of messages) answer `name: "<name>"`."""
    if not _is_runnable(model):
        raise TypeError(f"register_chat_model('{name}', …) needs a LangChain chat model, got {type(model).__name__}")
    with _registry_lock:
        _registered[name] = model


def unregister_chat_model(name: str) -> None:
    with _registry_lock:
        _registered.pop(name, None)


def _is_runnable(value: Any) -> bool:
    from langchain_core.runnables import Runnable

    return isinstance(value, Runnable)


_USAGE_ERRORS = (TypeError, ValueError, KeyError, AttributeError, NotImplementedError, ImportError)
_TRANSIENT_NAMES = ("timeout", "connection", "ratelimit", "overloaded", "unavailable", "internalserver")


def _status_of(error: BaseException) -> int | None:
    for holder in (error, getattr(error, "response", None)):
        for attr in ("status_code", "status", "http_status"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and 100 <= value < 600:
                return value
    return None


def provider_error(error: BaseException, config: ModelConfig) -> ProviderError:
    """The ProviderError for an exception raised by a LangChain model (module doc: which are retryable)."""
    if isinstance(error, ProviderError):
        return error
    status = _status_of(error)
    name = type(error).__name__
    if status is not None:
        retryable = status in (408, 429) or status >= 500
    elif isinstance(error, (TimeoutError, asyncio.TimeoutError, ConnectionError)) or \
            any(part in name.lower() for part in _TRANSIENT_NAMES):
        retryable = True
    else:
        retryable = not isinstance(error, _USAGE_ERRORS)
    kind = "transient" if retryable else "usage"
    return ProviderError(f"langchain model '{config.name}' ({config.model}) failed ({kind} error): "
                         f"{name}: {error}".rstrip(": "), retryable=retryable, status=status)


def _load_attribute(target: str, folder: str) -> Any:
    """``module:attr`` from ``folder`` first, like python("…") tools, but not necessarily a callable."""
    from ..runtime.errors import FlowRuntimeError
    from ..runtime.pyimport import load_object

    try:
        return load_object(target, folder)
    except FlowRuntimeError as error:
        raise ProviderError(error.cause) from None


def _text(content: Any) -> str:
    """A message's text: string content, or the text parts of a list of content blocks."""
    return valid_text(_raw_text(content))


def _raw_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and block.get("type") in ("text", "output_text", None) \
                    and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "".join(parts)
    return str(content)


def to_langchain_messages(messages: list[dict[str, Any]]) -> list[Any]:
    """fmflow chat messages → LangChain messages."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    out: list[Any] = []
    for i, message in enumerate(messages):
        role, content = message.get("role"), message.get("content") or ""
        if role == "system":
            out.append(SystemMessage(content=content))
        elif role == "user":
            out.append(HumanMessage(content=content))
        elif role == "assistant":
            calls = [{"id": str(c.get("id") or f"call_{i}_{n}"), "name": c["name"], "args": c.get("arguments") or {},
                      "type": "tool_call"} for n, c in enumerate(message.get("tool_calls") or [])]
            out.append(AIMessage(content=content, tool_calls=calls))
        elif role == "tool":
            out.append(ToolMessage(content=content, tool_call_id=str(message.get("tool_call_id") or ""),
                                   name=message.get("name")))
        else:
            raise ProviderError(f"message {i + 1} has role '{role}', which LangChain has no message for")
    return out


def _tool_schema(spec) -> dict[str, Any]:
    return {"type": "function",
            "function": {"name": spec.name, "description": spec.description, "parameters": spec.parameters}}


class LangChainProvider(Provider):
    name = "langchain"
    supports_structured_output = False

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], Any] = {}
        self._settings: dict[tuple[int, float | None, int | None], Any] = {}
        self._lock = threading.Lock()  # runs on several threads' loops share the provider

    def model_for(self, config: ModelConfig) -> Any:
        """The LangChain model a config names (module doc), made once per (folder, name)."""
        name = config.model
        if not name:
            raise ProviderError(f"langchain model '{config.name}' needs `name: \"module:factory\"` or the name of "
                                f"a model given to register_chat_model()")
        with _registry_lock:
            if name in _registered:
                return _registered[name]
        if ":" not in name:
            known = ", ".join(sorted(_registered)) or "none"
            raise ProviderError(f"langchain model '{config.name}': '{name}' is neither \"module:factory\" nor a "
                                f"registered chat model (registered: {known})")
        folder = os.path.abspath(os.path.dirname(config.source) if config.source else os.getcwd())
        key = (folder, name)
        with self._lock:  # a factory runs once even when runs start together
            if key not in self._models:
                self._models[key] = self._make(config, name, folder)
            return self._models[key]

    def _make(self, config: ModelConfig, target: str, folder: str) -> Any:
        from ..runtime.errors import FlowRuntimeError

        try:
            value = _load_attribute(target, folder)
            if not _is_runnable(value):
                if not callable(value):
                    raise ProviderError(f"\"{target}\" is a {type(value).__name__}, neither a chat model nor a "
                                        f"factory that makes one")
                value = value()
        except ProviderError as error:
            raise ProviderError(f"langchain model '{config.name}': {error}") from error
        except FlowRuntimeError as error:  # the import failed
            raise ProviderError(f"langchain model '{config.name}': {error}") from error
        except Exception as error:
            raise ProviderError(f"langchain model '{config.name}': \"{target}\"() failed: "
                                f"{type(error).__name__}: {error}") from error
        if not _is_runnable(value):
            raise ProviderError(f"langchain model '{config.name}': \"{target}\"() returned a "
                                f"{type(value).__name__}, not a LangChain chat model")
        return value

    def _with_settings(self, model: Any, request: ChatRequest) -> Any:
        """A copy of the model with temperature/max_tokens set, for the fields its class declares."""
        fields = getattr(type(model), "model_fields", {})
        update = {k: v for k, v in (("temperature", request.temperature), ("max_tokens", request.max_tokens))
                  if v is not None and k in fields}
        if not update:
            return model
        key = (id(model), update.get("temperature"), update.get("max_tokens"))
        with self._lock:
            if key not in self._settings:
                self._settings[key] = (model, model.model_copy(update=update))  # keeps `model` alive: ids stay unique
            return self._settings[key][1]

    async def complete(self, config: ModelConfig, request: ChatRequest) -> ChatResponse:
        model = self._with_settings(self.model_for(config), request)
        messages = to_langchain_messages(request.messages)
        if request.tools:
            bind_tools = getattr(model, "bind_tools", None)
            try:
                if bind_tools is None:
                    raise NotImplementedError
                model = bind_tools([_tool_schema(t) for t in request.tools])
            except NotImplementedError:
                raise ToolsUnsupported(f"langchain model '{config.name}' ({type(model).__name__}) has no tool "
                                       f"calling (bind_tools is not implemented)") from None
            except Exception as error:
                raise provider_error(error, config) from error
        kwargs = dict(config.options)
        try:
            if request.on_text is not None:
                message = None
                async for chunk in model.astream(messages, **kwargs):
                    piece = _text(getattr(chunk, "content", chunk))
                    if piece:
                        request.on_text(piece)
                    message = chunk if message is None else message + chunk
            else:
                message = await model.ainvoke(messages, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise provider_error(error, config) from error
        return self._response(message, config)

    @staticmethod
    def _response(message: Any, config: ModelConfig) -> ChatResponse:
        if message is None:
            raise ProviderError(f"langchain model '{config.name}' streamed nothing", retryable=True)
        if isinstance(message, str):  # a Runnable that ends in a string parser
            return ChatResponse(text=message, model=config.model)
        calls = [ToolCall(id=str(c.get("id") or f"call_{n + 1}"), name=c["name"], arguments=dict(c.get("args") or {}))
                 for n, c in enumerate(getattr(message, "tool_calls", None) or [])]
        usage = getattr(message, "usage_metadata", None) or {}
        meta = getattr(message, "response_metadata", None) or {}
        if meta.get("finish_reason") == "content_filter":  # as OpenAI-backed chat models report it
            raise ProviderError(f"langchain model '{config.name}': the server's content filter withheld the "
                                f"reply (finish_reason: content_filter)")
        return ChatResponse(text=_text(getattr(message, "content", message)), tool_calls=calls,
                            tokens_in=usage.get("input_tokens"), tokens_out=usage.get("output_tokens"),
                            model=meta.get("model_name") or meta.get("model") or config.model)


register_provider("langchain", LangChainProvider)
