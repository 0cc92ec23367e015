"""Choosing models for one run: `--model PROVIDER:NAME` and `--model NAME=PROVIDER:MODEL`.

``PROVIDER:NAME`` is the model of prompts that name none. ``NAME=PROVIDER:MODEL``
replaces the declared model ``NAME`` for the run and keeps its other settings
(temperature, max_tokens, timeout, retry, rate, concurrency, fallback, cache);
``base_url``, ``api_key_env`` and ``options`` belong to a provider, so they are
kept only when the provider stays the same (``replay:echo`` echoes, whatever
answers the replay model had scripted).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .. import ast
from ..checks.typecheck import DEFAULT_MODEL
from ..diagnostics import suggestion_help
from ..providers.base import ModelConfig, split_model_spec

_PROVIDER_SETTINGS = ("base_url", "api_key_env")


class ModelChoiceError(ValueError):
    """A malformed or unknown model choice; the message says which and what would work."""


@dataclass(frozen=True)
class ModelChoice:
    default: str | None = None                                    # PROVIDER:NAME
    overrides: dict[str, str] = field(default_factory=dict)       # declared model → PROVIDER:MODEL


def parse_model_choices(specs: list[str] | str | None) -> ModelChoice:
    """``--model`` values as given on the command line (repeatable)."""
    if isinstance(specs, str):
        specs = [specs]
    default, overrides = None, {}
    for spec in specs or []:
        name, sep, target = spec.partition("=")
        if sep:
            if not name.isidentifier():
                raise ModelChoiceError(f"--model expects NAME=PROVIDER:MODEL with NAME a declared model, got '{spec}'")
            overrides[name] = _checked_spec(target, f"--model {name}=…")
        elif default is not None and default != spec:
            raise ModelChoiceError(f"--model PROVIDER:NAME is given twice ('{default}', '{spec}'); to replace "
                                   "a declared model, write --model NAME=PROVIDER:MODEL")
        else:
            default = _checked_spec(spec, "--model")
    return _choice(default, overrides)


def model_choices(model: str | None, models: dict[str, str] | None) -> ModelChoice:
    """The Python API's ``model="PROVIDER:NAME"`` and ``models={"fast": "PROVIDER:MODEL"}``."""
    overrides = {}
    for name, spec in (models or {}).items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ModelChoiceError(f"models: {name!r} is not the name of a declared model")
        overrides[name] = _checked_spec(spec, f"models[{name!r}]")
    return _choice(_checked_spec(model, "model") if model is not None else None, overrides)


def _choice(default: str | None, overrides: dict[str, str]) -> ModelChoice:
    if DEFAULT_MODEL in overrides and default is None:
        default = overrides[DEFAULT_MODEL]  # when no model is declared as `default`; else that one is replaced
    return ModelChoice(default, overrides)


def _checked_spec(spec: str, what: str) -> str:
    if not isinstance(spec, str) or split_model_spec(spec) is None:
        raise ModelChoiceError(f"{what} expects PROVIDER:NAME (e.g. ollama:llama3.2), got '{spec}'")
    return spec


def unknown_model_names(program, overrides: dict[str, str], option: str = "--model {name}=…") -> str | None:
    """Why some ``NAME=…`` of ``overrides`` names no declared model of ``program``, or None."""
    declared = [d.name for d in program.models()]
    for name in overrides:
        decl = program.lookup(name)
        if isinstance(decl, ast.ModelDecl) or (name == DEFAULT_MODEL and decl is None):
            continue
        what = (f"'{name}' is a {decl.kind} in {program.path}, not a model" if decl is not None
                else f"{program.path} declares no model '{name}'")
        help = suggestion_help(name, declared) or (f"models: {', '.join(declared)}" if declared
                                                   else "the file declares no model")
        return f"{option.format(name=name)}: {what}; {help}"
    return None


def overridden_models(program, overrides: dict[str, str]) -> dict[int, str]:
    """id(model declaration) → PROVIDER:MODEL, for the declared models ``overrides`` names."""
    found = {}
    for name, spec in overrides.items():
        decl = program.lookup(name)
        if isinstance(decl, ast.ModelDecl):
            found[id(decl)] = spec
    return found


def with_model(config: ModelConfig, spec: str) -> ModelConfig:
    """``config`` answered by PROVIDER:MODEL instead, keeping its other settings."""
    provider, model = split_model_spec(spec)
    if (provider, model) == ("replay", "echo"):  # as `--model replay:echo`: echo, whatever was scripted
        return replace(config, provider=provider, model=model, options={"echo": True})
    if provider == config.provider:
        return replace(config, model=model)
    return replace(config, provider=provider, model=model, options={},
                   **{key: None for key in _PROVIDER_SETTINGS})
