"""Flow inputs from the command line: `-i KEY=VALUE`, `-i KEY=@file`, `--input-json`."""

from __future__ import annotations

import json
import os
from typing import Any

from ..types import STR, Type, strip_optional


class InputError(ValueError):
    """A malformed input argument (a usage error: exit status 2)."""


def parse_inputs(pairs: list[str], input_json: str | None, params: list[tuple[str, Type]]) -> dict[str, Any]:
    """Inputs by name. A `str` input takes the text as is; others parse it as JSON."""
    types = dict(params)
    inputs: dict[str, Any] = {}
    if input_json:
        text = _read(input_json[1:], "--input-json") if input_json.startswith("@") else input_json
        try:
            data = json.loads(text)
        except ValueError as error:
            raise InputError(f"--input-json is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise InputError("--input-json must be a JSON object of the flow's inputs")
        inputs.update(data)
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError(f"-i expects KEY=VALUE or KEY=@file, got '{pair}'")
        if key not in types:
            known = ", ".join(types) or "none"
            raise InputError(f"the flow has no input '{key}' (inputs: {known})")
        text = _read(raw[1:], f"-i {key}") if raw.startswith("@") else raw
        inputs[key] = text if strip_optional(types[key]) == STR else _json_or_text(key, text)
    return inputs


def _json_or_text(key: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        if text.lstrip()[:1] in ("[", "{", '"'):
            raise InputError(f"-i {key}: not valid JSON ({error})") from None
        return text  # validation then says what type was expected


def _read(path: str, what: str) -> str:
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            return f.read()
    except OSError as error:
        raise InputError(f"{what}: cannot read '{path}': {error.strerror}") from None
