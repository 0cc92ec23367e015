"""Rendering prompt templates (Jinja2, sandboxed) and building chat messages.

Templates come from .fmflow files, so they run in Jinja's sandbox: a template
can read its variables (pydantic models included) but not reach Python internals.
"""

from __future__ import annotations

import enum
import json
import sys
from typing import Any, Callable

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel

from .outputs import to_jsonable


class TemplateRenderError(Exception):
    """A template that does not compile or fails while rendering; the message is for users."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _finalize(value: Any) -> Any:
    """How a value prints in ``{{ … }}``: enums as their names, and everything that is
    not a string as fmflow writes it (JSON: true, null, ["a"], {"id": …}) rather than
    Python's repr, which would leak into prompts."""
    if isinstance(value, str):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, enum.Enum):
        return str(value.value)
    if value is None or isinstance(value, (bool, BaseModel, list, tuple, dict)):
        return _to_json(value)
    return value


def _to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(to_jsonable(value), ensure_ascii=False, indent=indent)


class TemplateRenderer:
    """Compiles each template source once and renders it with a flow's values."""

    def __init__(self, filters: dict[str, Callable[..., Any]] | None = None) -> None:
        self.env = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined,
                                        keep_trailing_newline=False, finalize=_finalize)
        # Jinja's tojson cannot serialize models or enums; ours goes through to_jsonable.
        self.env.filters["tojson"] = _to_json
        if filters:
            self.env.filters.update(filters)
        self._cache: dict[str, Template] = {}

    def compile(self, source: str) -> Template:
        template = self._cache.get(source)
        if template is None:
            try:
                template = self.env.from_string(source)
            except TemplateSyntaxError as exc:
                raise TemplateRenderError(f"line {exc.lineno}: {exc.message}") from None
            self._cache[source] = template
        return template

    def render(self, source: str, variables: dict[str, Any]) -> str:
        template = self.compile(source)
        try:
            return template.render(variables)
        except TemplateError as exc:
            raise TemplateRenderError(_located(exc.message or str(exc))) from None
        except Exception as exc:  # a filter or an operator failing on the values given
            raise TemplateRenderError(_located(f"{type(exc).__name__}: {exc}")) from None


def _located(message: str) -> str:
    """Prefix the template line the error happened on, found in the traceback Jinja rewrites
    so that template frames carry the template's own line numbers."""
    tb = sys.exc_info()[2]
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"line {line}: {message}" if line else message


def build_messages(system: str | None, user: str) -> list[dict[str, str]]:
    """Chat messages for one prompt call: the system text (when there is one), then the user's."""
    messages = [{"role": "system", "content": system}] if system and system.strip() else []
    messages.append({"role": "user", "content": user})
    return messages


def OUTPUT_INSTRUCTIONS(schema: dict) -> str:  # noqa: N802 - a template-like constant, called
    """Text appended (after a blank line) to the user message of a prompt returning non-str."""
    compact = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    return ("Reply with JSON only: a single JSON value matching this JSON schema, "
            "with no prose and no code fences.\n"
            f"JSON schema: {compact}")
