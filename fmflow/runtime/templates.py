"""Rendering prompt templates (Jinja2, sandboxed) and building chat messages.

Templates come from .fmflow files, so they run in a sandbox (sandbox.py): a
template reads its variables (pydantic models included) but cannot reach
Python internals or change a value, and a render is bounded in time and size.
"""

from __future__ import annotations

import enum
import json
import re
import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Awaitable, Callable, Iterable

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from pydantic import BaseModel

from .errors import FlowRuntimeError
from .outputs import to_jsonable
from .sandbox import CURRENT_BUDGET, LimitedSandbox, RenderLimitError, RenderLimits, budget, end_budget, \
    start_budget


class TemplateRenderError(Exception):
    """A template that does not compile or fails while rendering; the message is for users."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _finalize(value: Any) -> Any:
    """How a value prints in ``{{ … }}``: enums as their names, and everything that is
    not a string as fmflow writes it (JSON: true, null, ["a"], {"id": …}) rather than
    Python's repr, which would leak into prompts."""
    if type(value) is str:   # the output of every {{ … }}, captured ones too, is within the size limit
        spent = CURRENT_BUDGET.get()
        if spent is not None and len(value) > spent.limits.chars:
            spent.count(len(value), "a value")
        return value
    budget().check(value, "a value")
    if isinstance(value, str):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, enum.Enum):
        return str(value.value)
    if value is None or isinstance(value, (bool, BaseModel, list, tuple, dict)):
        return _to_json(value)
    return value


def _to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(to_jsonable(value), ensure_ascii=False, indent=indent)


# How a template reaches the flow's declared filters while it renders: set around
# each render by the runtime (fmflow.runtime.prompts), read by the filters below.
FILTER_CALLS: ContextVar[Callable[[str, list, dict], Awaitable[Any]] | None] = ContextVar(
    "fmflow_filter_calls", default=None)


def _environment(filters: dict[str, Callable[..., Any]] | None = None, is_async: bool = False) -> LimitedSandbox:
    env = LimitedSandbox(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=False,
                         finalize=_finalize, enable_async=is_async)
    # Jinja's tojson cannot serialize models or enums; ours goes through to_jsonable.
    env.add_filters({"tojson": _to_json, **(filters or {})})
    return env


def _declared_filter(name: str) -> Callable[..., Awaitable[Any]]:
    """A template's `| name` for a `filter` the flow declares: the runtime calls it as a flow
    would (arguments and result validated, mocks, traces); sync or async Python both work.
    The call has its own timeout (`python(…, timeout: …)`), so its time is no part of the
    render's; its result counts against the render's size limit like any value."""
    async def call(value: Any, *args: Any, **kwargs: Any) -> Any:
        calls = FILTER_CALLS.get()
        if calls is None:
            raise TemplateRenderError(f"filter '{name}' can only run while a flow runs")
        spent, started = budget(), time.monotonic()
        try:
            result = await calls(name, [value, *args], kwargs)
        finally:
            spent.deadline += time.monotonic() - started
        spent.check(result, f"the result of filter '{name}'")
        return result
    return call


class TemplateRenderer:
    """Compiles each template source once and renders it with a flow's values, within ``limits``.

    ``filters`` are plain Python functions added to Jinja's own. ``declared``
    names the `filter` declarations visible to the templates: a template that
    uses one renders in Jinja's async mode (``render_async``), so that the
    filter, a Python function that may be async or slow, runs as a call of the
    flow without blocking the event loop; other templates render synchronously.
    """

    def __init__(self, filters: dict[str, Callable[..., Any]] | None = None,
                 limits: RenderLimits | None = None, declared: Iterable[str] = ()) -> None:
        self.limits = limits or RenderLimits()
        self.env = _environment(filters)
        self.declared = frozenset(declared)
        self._async_env: LimitedSandbox | None = None
        self._cache: dict[str, Template] = {}
        self._async_cache: dict[str, Template] = {}
        self._plain: dict[str, _Substitution | None] = {}
        self._names: dict[str, tuple[frozenset[str], frozenset[str]]] = {}

    def compile(self, source: str) -> Template:
        return self._compile(source, self.env, self._cache)

    def _compile(self, source: str, env: LimitedSandbox, cache: dict[str, Template]) -> Template:
        template = cache.get(source)
        if template is None:
            try:
                template = env.compile_guarded(source)
            except TemplateSyntaxError as exc:
                raise TemplateRenderError(f"line {exc.lineno}: {exc.message}") from None
            cache[source] = template
        return template

    def _names_of(self, source: str) -> tuple[frozenset[str], frozenset[str]]:
        """(variables read from outside, filter names used) by a template; empty when it does not parse."""
        names = self._names.get(source)
        if names is None:
            from jinja2 import meta, nodes

            try:
                tree = self.env.parse(source)
                filters = frozenset(f.name for f in tree.find_all(nodes.Filter))
                env = self._async_environment() if filters & self.declared else self.env
                names = (frozenset(meta.find_undeclared_variables(env.parse(source))), filters)
            except TemplateError:
                names = (frozenset(), frozenset())  # rendering reports the error
            self._names[source] = names
        return names

    def reads(self, source: str, name: str) -> bool:
        """Whether the template reads the variable ``name`` (e.g. `output_format`)."""
        return name in self._names_of(source)[0]

    def _async_environment(self) -> LimitedSandbox:
        if self._async_env is None:
            env = _environment(is_async=True)
            env.filters.update(self.env.filters)  # Jinja's and the plain ones, already guarded
            env.filters.update({name: _declared_filter(name) for name in self.declared})
            self._async_env = env
        return self._async_env

    async def render_async(self, source: str, variables: dict[str, Any]) -> str:
        """Like ``render``; a template using a declared filter awaits it (FILTER_CALLS must be set)."""
        if not self._names_of(source)[1] & self.declared:
            return self.render(source, variables)
        template = self._compile(source, self._async_environment(), self._async_cache)
        with self._rendering():
            return await self._generate_async(template, variables)

    def render(self, source: str, variables: dict[str, Any]) -> str:
        plain = self._plain.get(source, False)
        if plain is False:
            plain = self._plain[source] = _Substitution.of(source)
        if plain is not None:
            text = plain.render(variables)
            if text is not None:
                if len(text) > self.limits.chars:   # the same limit as a render by Jinja
                    raise TemplateRenderError(f"the rendered text would be larger than the limit of "
                                              f"{self.limits.chars:,} characters (templates are limited to "
                                              f"{self._limits_text()})")
                return text
        template = self.compile(source)
        with self._rendering():
            return self._generate(template, variables)

    @contextmanager
    def _rendering(self):
        """A render's budget, and its failures as TemplateRenderError (with the template line)."""
        token = start_budget(self.limits)
        try:
            yield
        except (TemplateRenderError, FlowRuntimeError):
            raise  # a declared filter's own failure, already worded (and located by the flow)
        except RenderLimitError as exc:
            message = f"{exc} (templates are limited to {self._limits_text()})"
            raise TemplateRenderError(message if message.startswith("line ") else _located(message)) from None
        except SecurityError as exc:
            raise TemplateRenderError(_located(f"{exc.message} (a template reads values; it cannot change "
                                               "them or reach Python internals)")) from None
        except TemplateError as exc:
            raise TemplateRenderError(_located(exc.message or str(exc))) from None
        except RecursionError:
            raise TemplateRenderError(_located("the template calls itself too deeply")) from None
        except Exception as exc:  # a filter or an operator failing on the values given
            raise TemplateRenderError(_located(f"{type(exc).__name__}: {exc}")) from None
        finally:
            end_budget(token)

    def _generate(self, template: Template, variables: dict[str, Any]) -> str:
        """Render piece by piece, so that the output's size and the time are checked as it grows."""
        # Template.render without its join: the root function yields the output piece by piece.
        stream = template.root_render_func(template.new_context(variables))
        output = _Output(self.limits.chars)
        try:
            for piece in stream:
                if not output.add(piece):
                    break
        except Exception:
            template.environment.handle_exception()   # re-raises with the template's own line numbers
        return output.text(stream, template)

    async def _generate_async(self, template: Template, variables: dict[str, Any]) -> str:
        """``_generate`` in Jinja's async mode (a template using a declared filter)."""
        stream = template.root_render_func(template.new_context(variables))
        output = _Output(self.limits.chars)
        try:
            async for piece in stream:
                if not output.add(piece):
                    break
        except (TemplateRenderError, FlowRuntimeError):
            raise
        except Exception:
            template.environment.handle_exception()
        try:
            return output.text(stream, template)
        finally:
            await stream.aclose()   # a render stopped at the size limit leaves no generator behind

    def _limits_text(self) -> str:
        limits = self.limits
        return (f"{limits.seconds:g}s, {limits.chars:,} characters of output and "
                f"{limits.iterations:,} loop iterations")


class _Output:
    """The pieces of a render so far, within the size limit."""

    __slots__ = ("pieces", "size", "limit")

    def __init__(self, limit: int) -> None:
        self.pieces: list[str] = []
        self.size, self.limit = 0, limit

    def add(self, piece: str) -> bool:
        """Keep ``piece``; False once the output is over the limit (the render stops there)."""
        self.size += len(piece)
        if self.size > self.limit:
            return False
        self.pieces.append(piece)
        return True

    def text(self, stream, template: Template) -> str:
        if self.size > self.limit:
            line = _template_line(stream, template)
            message = f"the rendered text would be larger than the limit of {self.limit:,} characters"
            raise RenderLimitError(f"line {line}: {message}" if line else message)
        return "".join(self.pieces)


_VARIABLE = re.compile(r"\{\{ *([A-Za-z_][A-Za-z0-9_]*) *\}\}")
_JINJA_CONSTANTS = frozenset({"true", "false", "none", "True", "False", "None"})


class _Substitution:
    """A template that only substitutes variables (`Q: {{ q }}`), rendered without Jinja.

    It gives the text Jinja gives, at a fraction of the cost, which counts when
    a batch renders one prompt per record. Anything else (a tag, a comment, a
    filter, an expression, a \\r that Jinja would normalise) stays with Jinja,
    and so does a render whose variable is missing, for Jinja's error message.
    """

    __slots__ = ("parts",)

    def __init__(self, parts: list[str]) -> None:
        self.parts = parts  # literal, name, literal, name, …, literal

    @classmethod
    def of(cls, source: str) -> "_Substitution | None":
        if source.endswith("\n"):  # keep_trailing_newline=False: Jinja drops one final newline
            source = source[:-1]
        parts = _VARIABLE.split(source)
        if any(name in _JINJA_CONSTANTS for name in parts[1::2]):
            return None
        literals = parts[0::2]
        for i, text in enumerate(literals):
            if "{{" in text or "{%" in text or "{#" in text or "\r" in text:
                return None
            if (i < len(literals) - 1 and text.endswith("{")) or (i > 0 and text.startswith("}")):
                return None  # `{{{ x }}` and `{{ x }}}` lex differently in Jinja
        return cls(parts)

    def render(self, variables: dict[str, Any]) -> str | None:
        parts = self.parts
        out = [parts[0]]
        for i in range(1, len(parts), 2):
            name = parts[i]
            if name not in variables:
                return None
            value = _finalize(variables[name])
            out.append(value if type(value) is str else str(value))
            out.append(parts[i + 1])
        return "".join(out)


def _template_line(stream, template: Template) -> int | None:
    """The template line a paused render stream is at (the compiled root function's frame
    maps back to the template's lines)."""
    frame = getattr(stream, "gi_frame", None) or getattr(stream, "ag_frame", None)
    if frame is None or frame.f_code.co_filename != "<template>":
        return None
    return template.get_corresponding_lineno(frame.f_lineno)


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


def build_messages(system: str | None, user: str, history: list[dict[str, str]] = ()) -> list[dict[str, str]]:
    """Chat messages for one prompt call: the system text (when there is one), the
    earlier messages of the conversation (`history:`), then the user's."""
    messages = [{"role": "system", "content": system}] if system and system.strip() else []
    messages.extend(history)
    messages.append({"role": "user", "content": user})
    return messages


# The template variable that holds a typed prompt's OUTPUT_INSTRUCTIONS.
OUTPUT_FORMAT = "output_format"


def OUTPUT_INSTRUCTIONS(schema: dict) -> str:  # noqa: N802 - a template-like constant, called
    """Text appended (after a blank line) to the user message of a prompt returning non-str."""
    compact = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    return ("Reply with JSON only: a single JSON value matching this JSON schema, "
            "with no prose and no code fences.\n"
            f"JSON schema: {compact}")
