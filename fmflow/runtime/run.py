"""One run of a flow: its options, trace, cache and the dispatch of every call."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import ast
from ..checks.blocks import settings_problem
from ..checks.resolve import decl_type
from ..checks.typecheck import DEFAULT_MODEL
from ..providers import get_provider
from ..providers.base import ModelConfig, split_model_spec
from ..secrets import MaskedStream, SecretMasker, is_env_var_name, looks_like_key
from ..types import STR
from .agents import call_agent
from .boundary import Unrepresentable, admit, clean_text
from .budget import Budget
from .errors import FlowRuntimeError, NotMocked, describe
from .evaluate import Evaluator, contains_call
from .executor import FlowExecution
from .limits import share_limits
from .models import overridden_models, with_model
from .outputs import OutputError
from .prompts import call_prompt
from .retrieval import call_retriever
from .spans import CURRENT_SPAN, FLOW_STACK
from .tools import call_tool

DEFAULT_MAX_DEPTH = 64  # nested flow calls, the run's own flow counting as the first


@dataclass
class SharedModels:
    """Models' evaluated settings, shared by the runs of one job made with the same options."""

    configs: dict[int, Any] = field(default_factory=dict)  # id(ModelDecl) → ModelConfig
    decls: dict[tuple[str, str], Any] = field(default_factory=dict)  # ModelConfig.key → its declaration


@dataclass
class RunOptions:
    cache: bool = True
    trace: bool = True
    workdir: str = "."                       # where .fmflow/ (runs, cache) lives
    model: str | None = None                 # --model PROVIDER:NAME: the model of prompts that name none
    models: dict[str, str] | None = None     # --model NAME=PROVIDER:MODEL: declared models replaced for the run
    mocks: dict[str, Any] | None = None      # `fmflow test`: callee name → answer
    # `fmflow test`: answers model requests no mock took (scripts, a cassette); see test_models.TestModels.
    test_models: Any = None
    on_event: Callable[[str, str, int | None], None] | None = None  # progress: (event, name, line)
    on_text: Callable[[str], None] | None = None  # streams the text of the prompt that gives the final answer
    run_id: str | None = None                # the trace's run id (default: a new one)
    # Each model reply as it arrives: (ChatResponse, whether it came from the cache); for usage metrics.
    on_usage: Callable[[Any, bool], None] | None = None
    # An open ResponseCache shared by many runs (a server's): used when `cache` is on, never closed by a run.
    shared_cache: Any = None
    # Evaluated model settings shared by many runs (a batch's): env() in a model block is read once for all.
    shared_models: SharedModels | None = None
    limit_share: int = 1                     # processes sharing each model's rate and concurrency (a cluster)
    max_depth: int = DEFAULT_MAX_DEPTH       # nested flow calls a run may make (`--max-depth N`)
    # --budget: USD for the run's model calls, or a runtime.budget.Budget shared by many runs (a batch's).
    budget: Any = None
    # A finished run hands its trace to the background writer instead of writing it before it returns
    # (`flow.arun`, a server): RunResult.trace_path completes it for whoever reads it.
    trace_in_background: bool = False
    # A declared model that answers every prompt and agent of the run instead of their own (`fmflow eval`'s
    # `models: […]`); their own settings (temperature, …) still apply.
    every_model: str | None = None

    @property
    def testing(self) -> bool:
        return self.mocks is not None


@dataclass
class RunResult:
    value: Any
    run_id: str | None
    data: Any = field(default=None)  # the value as plain JSON data
    secrets: SecretMasker | None = None  # what the run masked: for showing the result (fmflow run)
    trace: Any = field(default=None, repr=False)  # the run's TraceWriter (None with traces off)

    @property
    def trace_path(self) -> str | None:
        """The run's trace file, complete: written now if the background writer has not yet."""
        if self.trace is None:
            return None
        self.trace.finish()
        return str(self.trace.path)


class RunState:
    """What every call of one run shares."""

    def __init__(self, program, options: RunOptions, trace=None, secrets: SecretMasker | None = None) -> None:
        self.program = program
        self.options = options
        self.trace = trace
        self.budget = Budget.of(options.budget)
        models = options.shared_models or SharedModels()
        self._model_configs: dict[int, Any] = models.configs
        self._model_decls: dict[tuple[str, str], ast.ModelDecl] = models.decls
        self._default: ModelConfig | None = None
        self._replaced = overridden_models(program, options.models or {})
        self._flows_started = False
        self._enums: dict[int, type] = {}
        # ModelConfig.key of models whose server refused tools: their agents use text (tool_text.py).
        self.text_tool_models: set[tuple[str, str]] = set()
        # What this run must never write down (fmflow.secrets); traces, the cache and errors share it.
        self.secrets = secrets if secrets is not None else secrets_for(program)
        # The final answer streams masked: a secret in it must not reach the screen either.
        self.stream = MaskedStream(self.secrets, options.on_text, clean=clean_text) if options.on_text else None
        # Calls made by callee name: a prompt or agent counts each request to a model (reasks,
        # retries and agent rounds included), anything else each call (a mocked prompt too).
        self.calls: dict[str, int] = {}

    def count_call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def provider_for(self, config: ModelConfig, decl: ast.Decl):
        """The provider that answers ``decl``'s request to the model ``config``."""
        if self.options.test_models is not None:
            return self.options.test_models.provider(config, decl)
        return get_provider(config.provider)

    def response_cache(self):
        """The response cache, for a call that can use it (None with the cache off): the
        options' shared cache, else the process's cache of the workdir, opened on first use."""
        if not self.options.cache:
            return None
        if self.options.shared_cache is not None:
            return self.options.shared_cache
        from .cache import DEFAULT_PATH, shared_cache

        return shared_cache(os.path.join(self.options.workdir, DEFAULT_PATH))

    # -------------------------------------------------------------- traces
    def trace_start(self, kind: str, name: str, parent: str | None, line: int | None, **attrs):
        if self.options.on_event is not None:
            self.options.on_event("start", f"{kind} {name}", line)
        if self.trace is None:
            return None
        return self.trace.start_span(kind, name, parent or CURRENT_SPAN.get(), line, **attrs)

    def trace_end(self, span, output: Any = None, error: BaseException | None = None) -> None:
        if self.options.on_event is not None and span is not None:
            self.options.on_event("end", span.name, None)
        if span is None:
            return
        if error is None:
            span.end(output=output)
        else:
            span.set(error_type=type(error).__name__)
            span.end(output=output, error=_error_text(error))

    # --------------------------------------------------------------- values
    def enum_class(self, decl: ast.EnumDecl, owner: ast.Decl) -> type:
        key = id(decl)
        if key not in self._enums:
            path = self.program.context_of(decl).path
            self._enums[key] = self.program.types.annotation(decl_type(decl, path))
        return self._enums[key]

    def validate(self, t, value: Any, what: str | Callable[[], str]) -> Any:
        """``value`` as a value of type ``t``, copied and checked to be representable (boundary.py).
        ``what`` names the value in an error (a function giving the name, when it costs to build)."""
        if t is STR and type(value) is str:   # the commonest case, as admit() would leave it
            return value if value.isascii() else clean_text(value)
        try:
            return admit(self.program.types.validate(t, value))
        except OutputError as error:
            raise FlowRuntimeError(f"{_named(what)}: {error.message}") from None
        except Unrepresentable as error:
            raise FlowRuntimeError(f"{_named(what)}: {error}") from None
        except RecursionError:
            raise FlowRuntimeError(f"{_named(what)}: it is nested too deeply or contains itself") from None
        except Exception as error:   # a value whose own methods fail while it is read (a __repr__ that raises)
            raise FlowRuntimeError(f"{_named(what)}: it cannot be read ({describe(error)})") from None

    def read_env(self, name: Any, read: Callable[[], Any]) -> Any:
        """env(name, …): the value ``read()`` gives, a secret from now on (when it came from
        the environment), with valid text. A key written as the name is refused unechoed."""
        if isinstance(name, str) and not is_env_var_name(name) and looks_like_key(name):
            self.secrets.add(name)
            raise FlowRuntimeError("env(…) takes the name of an environment variable; this looks like a key")
        value = read()
        if isinstance(value, str):
            value = clean_text(value)
            if isinstance(name, str) and name in os.environ:
                self.secrets.add(value)
        return value

    # ---------------------------------------------------------------- calls
    async def call(self, decl: ast.Decl, names: list[str | None], values: list[Any]) -> Any:
        """Call a declaration with arguments as written (positional or named)."""
        if isinstance(decl, ast.TypeDecl):
            struct = self.program.resolver(decl).resolve(ast.TypeRef(decl.name, None, False, span=decl.span))
            return self.validate(struct, dict(zip(names, values)), f"{decl.name}(…)")
        params, returns = self.program.signature(decl)
        args = _bind(decl, params, names, values)
        mocked = self._mocked(decl)
        if isinstance(decl, ast.FlowDecl) and not mocked:
            return await self.run_flow(decl, self._validate_args(decl, params, args))
        if mocked or not isinstance(decl, (ast.PromptDecl, ast.AgentDecl)):
            self.count_call(decl.name)
        span = self.trace_start(decl.kind, decl.name, None, None, inputs=args)
        token = CURRENT_SPAN.set(span.id) if span is not None else None
        try:
            result = await self._dispatch(decl, params, returns, args)
        except BaseException as error:
            self.trace_end(span, error=error)
            raise
        finally:
            if token is not None:
                CURRENT_SPAN.reset(token)
        self.trace_end(span, output=result)
        return result

    async def _dispatch(self, decl: ast.Decl, params, returns, args: dict[str, Any]) -> Any:
        args = self._validate_args(decl, params, args)
        if len(args) < len(params):   # some left to their defaults
            args = await self.with_defaults(decl, args)
        mocks = self.options.mocks
        if mocks is None and type(decl) is ast.ToolDecl:   # the commonest call, first
            return await call_tool(self, decl, args, returns)
        what = f"{decl.kind} '{decl.name}'"
        if self._mocked(decl):
            return self.validate(returns, mocks[decl.name], f"the mock of {what}")
        if isinstance(decl, ast.ToolDecl):
            return await call_tool(self, decl, args, returns)
        models_stand_in = self.options.test_models is not None  # answers prompts and agents at the model
        if mocks is not None and (isinstance(decl, ast.RetrieverDecl) or (
                isinstance(decl, (ast.PromptDecl, ast.AgentDecl)) and not models_stand_in)):
            raise NotMocked(f"{what} is called but not mocked; add `{decl.name}: …` to the test's mock")
        if isinstance(decl, ast.PromptDecl):
            return await call_prompt(self, decl, args, returns)
        if isinstance(decl, ast.AgentDecl):
            return await call_agent(self, decl, args, returns)
        if isinstance(decl, ast.RetrieverDecl):
            return await call_retriever(self, decl, args)
        raise FlowRuntimeError(f"{what} cannot be called")

    def _top_level(self) -> bool:
        """Whether the flow about to run is the run's own (not one it calls)."""
        started = not self._flows_started
        self._flows_started = True
        return started

    def _mocked(self, decl: ast.Decl) -> bool:
        return self.options.mocks is not None and decl.name in self.options.mocks

    def _validate_args(self, decl: ast.Decl, params, args: dict[str, Any]) -> dict[str, Any]:
        return {name: self.validate(t, args[name], lambda name=name: f"argument '{name}' of {decl.kind} "
                                    f"'{decl.name}'") for name, t in params if name in args}

    async def with_defaults(self, decl: ast.Decl, args: dict[str, Any]) -> dict[str, Any]:
        """``args`` (validated) with the parameters left out given their defaults, evaluated now,
        in order (a default may read the parameters before it), and validated like arguments."""
        params = getattr(decl, "params", ())
        if all(p.name in args for p in params):
            return args
        values = dict(args)
        types = dict(self.program.signature(decl)[0])
        for param in params:
            if param.name in values:
                continue
            what = f"{decl.kind} '{decl.name}'"
            if param.default is None:
                raise FlowRuntimeError(f"missing argument '{param.name}' for {what}")
            value = await Evaluator(self, decl, dict(values)).eval(param.default)
            values[param.name] = self.validate(types[param.name], value,
                                               f"the default of parameter '{param.name}' of {what}")
        return {p.name: values[p.name] for p in params}

    async def run_flow(self, decl: ast.FlowDecl, args: dict[str, Any]) -> Any:
        """Run a flow with validated arguments (defaults for those left out), in a span of its own."""
        args = await self.with_defaults(decl, args)
        top = self._top_level()
        self.count_call(decl.name)
        calls = (decl.name,) if top else (*FLOW_STACK.get(), decl.name)
        if len(calls) > self.options.max_depth:
            raise FlowRuntimeError(too_deep(calls, self.options.max_depth))
        token = FLOW_STACK.set(calls)  # the tasks this flow starts inherit it
        span = self.trace_start("flow", decl.name, None, decl.span.line, inputs=args)
        try:
            stream_to = self.stream.write if self.stream is not None and top else None
            execution = FlowExecution(self, decl, args, span.id if span is not None else CURRENT_SPAN.get(),
                                      stream_to=stream_to)
            result = await execution.execute()  # validated against the output type at its `return`
        except BaseException as error:
            self.trace_end(span, error=error)
            raise
        finally:
            FLOW_STACK.reset(token)
        self.trace_end(span, output=result)
        return result

    # --------------------------------------------------------------- models
    async def model_config(self, decl: ast.ModelDecl):
        """The evaluated settings of a model declaration: once per program when written with
        literals, once per run when they read the environment (env())."""
        key = id(decl)
        if key not in self._model_configs:
            config = self.program.memo.get(("model", key))
            if config is None:
                config = await self._evaluate_model(decl)
                memo = self.program.memo
                if not any(contains_call(e.value, memo) for e in decl.entries):   # no env(): the same every run
                    memo[("model", key)] = config
            if key in self._replaced:
                config = with_model(config, self._replaced[key])
            config = share_limits(config, self.options.limit_share)
            self._model_configs[key] = config
            self._model_decls[config.key] = decl
        return self._model_configs[key]

    async def default_model(self, decl: ast.Decl) -> ModelConfig:
        """The model of a prompt or agent without `model:` (LANGUAGE.md is silent; issue 4 decides).

        In order: a model declared as `default` in the prompt's file, else in the
        file the run loaded; `--model PROVIDER:NAME`; the
        FMFLOW_MODEL environment variable; the offline builtin:extractive.
        """
        declared = self.program.lookup(DEFAULT_MODEL, within=decl)
        if not isinstance(declared, ast.ModelDecl):  # an imported prompt (std/prompts): the run's own file's
            declared = self.program.lookup(DEFAULT_MODEL)
        if isinstance(declared, ast.ModelDecl):
            return await self.model_config(declared)
        if self._default is None:
            spec = self.options.model or os.environ.get("FMFLOW_MODEL")
            if spec:
                parsed = split_model_spec(spec)
                if parsed is None:
                    raise FlowRuntimeError(f"FMFLOW_MODEL must be PROVIDER:NAME (e.g. ollama:llama3.2), got '{spec}'")
                provider, name = parsed
            else:
                provider, name = "builtin", "extractive"
                if not self.options.testing:  # a test scripts the default model or fails, naming the prompt
                    print(f"fmflow: {decl.kind} '{decl.name}' names no model and none is set; using "
                          "builtin:extractive (declare `model default {…}`, set FMFLOW_MODEL or pass --model)",
                          file=sys.stderr)
            self._default = ModelConfig(name=DEFAULT_MODEL, provider=provider, model=name, source=self.program.path)
        return self._default

    async def fallbacks(self, config) -> list:
        """The evaluated fallback models of a model, named in its own file."""
        decl = self._model_decls.get(config.key)
        if decl is None:  # the default model from --model / FMFLOW_MODEL has no fallbacks
            return []
        return [await self.model_config(self.program.lookup(name, within=decl)) for name in config.fallback]

    async def _evaluate_model(self, decl: ast.ModelDecl):
        evaluator = Evaluator(self, decl)
        values: dict[str, Any] = {}
        for entry in decl.entries:
            values[entry.key] = await evaluator.eval(entry.value)
        self._note_credentials(decl, values)
        problem = settings_problem("model", decl.name, values)  # the checker's bounds, for env() values
        if problem is not None:
            raise FlowRuntimeError(problem)
        fallback = tuple(v.name if isinstance(v, ast.Decl) else str(v) for v in values.pop("fallback", []))
        provider, model = values.pop("provider"), values.pop("name", None)
        rate = values.pop("rate", None)
        return ModelConfig(
            name=decl.name, provider=provider, model=model, fallback=fallback,
            rate=(int(rate[0]), float(rate[1])) if rate else None,
            source=self.program.context_of(decl).path, **values)


    def _note_credentials(self, decl: ast.ModelDecl, values: dict[str, Any]) -> None:
        """Register the model's key and URL credentials as secrets; refuse a key written as a name."""
        self.secrets.add_url(values.get("base_url"))
        key_env = values.get("api_key_env")
        if key_env is None:
            return
        if not isinstance(key_env, str) or not is_env_var_name(key_env):
            if isinstance(key_env, str) and looks_like_key(key_env):
                self.secrets.add(key_env)
                problem = "this looks like a key, not a variable name"
            else:
                problem = "it is not an environment variable name ([A-Z_][A-Z0-9_]*)"
            raise FlowRuntimeError(f"model '{decl.name}': api_key_env names the environment variable that holds "
                                   f"the key; {problem}")
        self.secrets.add_env(key_env)


def secrets_for(program) -> SecretMasker:
    """The secrets a run of ``program`` masks from its start: the values of the environment
    variables it may read (``env("NAME")``, ``api_key_env``, OPENAI_API_KEY) and the
    credentials of the URLs it names. Values read later are added as they are read."""
    sources, urls = program.secret_sources
    names = program.memo.get("secret names")
    if names is None:
        names = program.memo["secret names"] = tuple(sorted(sources | {"OPENAI_API_KEY"}))
    # Built once per set of values: a batch's runs read the same environment.
    key = ("secrets", tuple(os.environ.get(name) for name in names))
    masker = program.memo.get(key)
    if masker is None:
        masker = SecretMasker()
        for name in names:
            masker.add_env(name)
            if looks_like_key(name):      # a key written where a name belongs
                masker.add(name)
        for url in urls:
            masker.add_url(url)
        program.memo[key] = masker
    return masker.copy()


def _named(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


def too_deep(calls: tuple[str, ...], limit: int) -> str:
    """Why a run stopped at ``limit`` nested flow calls, naming the cycle it went round."""
    name = calls[-1]
    earlier = [i for i, n in enumerate(calls[:-1]) if n == name]
    if earlier:
        loop = " → ".join(calls[earlier[-1]:]) + " …"
        what = f"the loop {loop} did not stop"
    else:
        shown = ["…", *calls[-6:]] if len(calls) > 6 else list(calls)
        what = "the chain " + " → ".join(shown) + " went on"
    return (f"more than {limit} nested flow calls: {what}; return before the call that recurses "
            f"(check its stopping condition), or allow deeper runs with --max-depth")


def _bind(decl: ast.Decl, params, names: list[str | None], values: list[Any]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    order = [name for name, _ in params]
    for position, (name, value) in enumerate(zip(names, values)):
        key = name if name is not None else (order[position] if position < len(order) else None)
        if key is None:
            raise FlowRuntimeError(f"too many arguments for {decl.kind} '{decl.name}'")
        args[key] = value
    return args


def _error_text(error: BaseException) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, FlowRuntimeError):
        return error.cause
    return describe(error)
