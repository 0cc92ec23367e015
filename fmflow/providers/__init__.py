"""Model providers. ``get_provider(name)`` returns the shared instance of a kind."""

from __future__ import annotations

import importlib
from typing import Callable

from .base import (ChatRequest, ChatResponse, ModelConfig, Provider, ProviderError, ToolCall, ToolSpec,
                   ToolsUnsupported)

_FACTORIES: dict[str, Callable[[], Provider]] = {}
_INSTANCES: dict[str, Provider] = {}


def register_provider(name: str, factory: Callable[[], Provider]) -> None:
    _FACTORIES[name] = factory
    _INSTANCES.pop(name, None)


# The module of each built-in provider, imported on first use: `fmflow check`
# never pays for providers, and a run pays only for the ones it uses (hf
# imports torch and transformers).
_BUILTIN_MODULES = {
    "replay": "replay",
    "openai": "openai",
    "ollama": "openai",
    "hf": "hf",
    "langchain": "langchain",
    "builtin": "builtin",
}


def get_provider(name: str) -> Provider:
    if name not in _INSTANCES:
        if name not in _FACTORIES and name in _BUILTIN_MODULES:
            importlib.import_module(f"{__name__}.{_BUILTIN_MODULES[name]}")  # registers itself
        if name not in _FACTORIES:
            known = ", ".join(sorted(set(_FACTORIES) | set(_BUILTIN_MODULES))) or "none"
            raise ProviderError(f"provider '{name}' is not available (available: {known})")
        _INSTANCES[name] = _FACTORIES[name]()
    return _INSTANCES[name]


async def release_loop_resources() -> None:
    """Close what the providers bound to the running loop (before a one-run loop ends)."""
    for provider in list(_INSTANCES.values()):
        await provider.release_loop()


async def close_providers() -> None:
    """Release every provider's connections and models (end of a process or a test)."""
    for provider in list(_INSTANCES.values()):
        await provider.aclose()


__all__ = ["ChatRequest", "ChatResponse", "ModelConfig", "Provider", "ProviderError", "ToolCall", "ToolSpec",
           "ToolsUnsupported", "close_providers", "get_provider", "register_provider", "release_loop_resources"]
