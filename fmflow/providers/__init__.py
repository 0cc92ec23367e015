"""Model providers. ``get_provider(name)`` returns the shared instance of a kind."""

from __future__ import annotations

from typing import Callable

from .base import ChatRequest, ChatResponse, ModelConfig, Provider, ProviderError, ToolCall, ToolSpec

_FACTORIES: dict[str, Callable[[], Provider]] = {}
_INSTANCES: dict[str, Provider] = {}


def register_provider(name: str, factory: Callable[[], Provider]) -> None:
    _FACTORIES[name] = factory
    _INSTANCES.pop(name, None)


def get_provider(name: str) -> Provider:
    if name not in _INSTANCES:
        _load_builtin_providers()
        if name not in _FACTORIES:
            known = ", ".join(sorted(_FACTORIES)) or "none"
            raise ProviderError(f"provider '{name}' is not available (available: {known})")
        _INSTANCES[name] = _FACTORIES[name]()
    return _INSTANCES[name]


def _load_builtin_providers() -> None:
    # Imported on first use so that `fmflow check` never pays for providers.
    from . import replay  # noqa: F401


__all__ = ["ChatRequest", "ChatResponse", "ModelConfig", "Provider", "ProviderError", "ToolCall", "ToolSpec",
           "get_provider", "register_provider"]
