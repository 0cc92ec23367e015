"""The provider interface: what the runtime sends to a model and gets back.

A provider turns a ChatRequest into a ChatResponse for one model setting.
Transport faults become ProviderError with ``retryable`` saying whether the
runtime's retry policy may try again (429, 5xx, timeouts, dropped
connections) or must give up at once (401/403, a bad request).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class ModelConfig:
    """A `model` declaration with its values evaluated (env() read, durations in seconds)."""

    name: str                      # the declaration's name in the flow file
    provider: str                  # openai | ollama | hf | langchain | builtin | replay
    model: str | None = None       # the provider's model name (`name:` key)
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None   # seconds, per call (None: DEFAULT_TIMEOUT; see call_deadline)
    retry: int = 0                 # transport-level retries
    rate: tuple[int, float] | None = None  # (requests, period in seconds)
    concurrency: int | None = None
    fallback: tuple[str, ...] = ()
    cache: bool | None = None      # None: on when temperature is 0
    options: dict[str, Any] = field(default_factory=dict)
    native_tools: bool = True      # false: agents use the text protocol of runtime/tool_text.py
    source: str = ""               # path of the file that declares it (keys shared limits)

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.name)

    def caches(self) -> bool:
        if self.cache is not None:
            return self.cache
        return self.temperature == 0


@dataclass
class ToolSpec:
    """A callable an agent may use, described for the model."""

    name: str
    description: str
    parameters: dict[str, Any]     # JSON schema of the arguments object


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class ChatRequest:
    messages: list[dict[str, Any]]          # {"role": "system"|"user"|"assistant"|"tool", "content": str, …}
    temperature: float | None = None
    max_tokens: int | None = None
    json_schema: dict[str, Any] | None = None  # output schema when the prompt returns a non-str type
    schema_name: str | None = None
    tools: list[ToolSpec] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # When set, the provider streams and calls it with each piece of text as it
    # arrives (`fmflow run` shows the final answer as it is written).
    on_text: Callable[[str], None] | None = None


@dataclass
class ChatResponse:
    text: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost: float | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    model: str | None = None                # the model that answered, as the provider names it
    truncated: bool = False                 # the reply stopped at max_tokens (or the context's end)


# LANGUAGE.md §2: a model call without `timeout:` has a total deadline of 120s,
# so a server that answers a byte at a time cannot keep a run alive forever.
DEFAULT_TIMEOUT = 120.0


def call_deadline(config: ModelConfig) -> float:
    """The total time one call of this model may take: its `timeout:`, else DEFAULT_TIMEOUT.

    `timeout: 0s` counts as unset: a model call always has a deadline.
    """
    return config.timeout if config.timeout is not None and config.timeout > 0 else DEFAULT_TIMEOUT


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(value: Any) -> Any:
    """``value`` with every lone UTF-16 surrogate in its strings (keys too) replaced by U+FFFD.

    JSON lets a server write ``"\\ud800"`` without its pair; such text cannot be
    encoded as UTF-8, so it would fail the run at its first write (trace,
    cache, stdout) and lose the answer. Nested values are walked; a value
    nested past Python's recursion limit raises RecursionError.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value) if _LONE_SURROGATE.search(value) else value
    if isinstance(value, dict):
        return {valid_text(k): valid_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [valid_text(v) for v in value]
    return value


def split_model_spec(spec: str) -> tuple[str, str] | None:
    """``PROVIDER:NAME`` (as in --model and FMFLOW_MODEL) → (provider, name), or None if malformed."""
    provider, sep, name = spec.partition(":")
    return (provider, name) if sep and provider and name else None


class ProviderError(Exception):
    """A failed call. ``retryable``: the retry policy may try again."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class ToolsUnsupported(ProviderError):
    """The model or its server cannot take ``tools`` (native tool calls): agents then
    describe their tools in text and read the calls from JSON replies (runtime/tool_text.py)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, retryable=False, status=status)


class Provider(ABC):
    """One provider kind; instances may be shared by every model of that kind."""

    name: str = ""
    # Whether the provider honours ChatRequest.json_schema natively (structured output).
    supports_structured_output: bool = False
    # Whether the provider passes ChatRequest.tools to the model (native tool calls).
    supports_tools: bool = True

    @abstractmethod
    async def complete(self, config: ModelConfig, request: ChatRequest) -> ChatResponse:
        """Answer one request, or raise ProviderError."""

    async def aclose(self) -> None:
        """Release connections and loaded models."""

    async def release_loop(self) -> None:
        """Release what is bound to the running event loop (HTTP clients), keeping the rest
        (loaded models): called when a loop made for one run is about to end."""
