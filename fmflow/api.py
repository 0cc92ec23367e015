"""The Python API behind the CLI, the language server and the runtime."""

from __future__ import annotations

from pathlib import Path

from . import ast
from .checks.context import CheckContext
from .checks.loader import ModuleLoader
from .diagnostics import Diagnostic
from .errors import FmflowSyntaxError
from .parser import collector_paused, parse_text


def parse(text: str, path: str = "<string>") -> ast.Module:
    """Parse text into a Module, raising FmflowSyntaxError with every syntax error."""
    module, diagnostics = parse_text(text, path)
    if any(d.is_error for d in diagnostics):
        raise FmflowSyntaxError(diagnostics)
    return module


def load_program(path: str | Path, text: str | None = None, pins: dict[str, int] | None = None,
                 overrides: dict[str, str] | None = None) -> tuple[ModuleLoader, CheckContext | None]:
    """Check a file and its imports; the loader holds every checked module.

    Raises SourceError (an OSError) when ``path`` cannot be read as a flow file.
    """
    loader = ModuleLoader(pins=pins, overrides=overrides)
    return loader, loader.load(str(path), text=text)


def check(path: str | Path, pins: dict[str, int] | None = None) -> list[Diagnostic]:
    """Diagnostics of a file and the files it imports, sorted by file and position."""
    return _diagnostics_only(path, None, pins)


def check_text(text: str, path: str = "<string>", pins: dict[str, int] | None = None) -> list[Diagnostic]:
    """Diagnostics of ``text`` checked as if it were the file at ``path``."""
    return _diagnostics_only(path, text, pins)


def _diagnostics_only(path: str | Path, text: str | None, pins: dict[str, int] | None) -> list[Diagnostic]:
    """The diagnostics; the checked program is freed before the cyclic garbage collector runs
    again, so it never scans the program's objects (tens of thousands for a big file) and a
    caller checking file after file keeps no garbage behind."""
    with collector_paused():
        loader = ModuleLoader(pins=pins)
        try:
            loader.load(str(path), text=text)
            return loader.diagnostics()
        finally:
            loader.release()


class Flow:
    """A checked flow ready to run: ``flow.run(**inputs)`` or ``await flow.arun(**inputs)``.

    Results are pydantic models for declared types and plain values otherwise.
    ``last_run`` holds the run id and trace path of the latest run. ``run()`` returns
    once the run's trace file is complete; ``arun()`` leaves the writing to a
    background thread (reading ``last_run.trace_path`` completes it).
    """

    def __init__(self, program, name: str | None, options) -> None:
        self.program = program
        self.decl = program.flow(name)
        self.options = options
        self.last_run = None
        self._async = (None, None)   # (options, the same with traces written in the background)

    @property
    def name(self) -> str:
        return self.decl.name

    @property
    def inputs(self) -> list[str]:
        return [p.name for p in self.decl.params]

    async def arun(self, **inputs):
        from .runtime import run_flow

        result = self.last_run = await run_flow(self.program, self.decl.name, inputs, self._async_options())
        return result.value   # not last_run's: another task or thread may have run the flow since

    def _async_options(self):
        """The options with traces written in the background: the caller's loop never waits on the disk."""
        if self._async[0] is not self.options:
            from dataclasses import replace

            self._async = (self.options, replace(self.options, trace_in_background=True))
        return self._async[1]

    def run(self, **inputs):
        import asyncio

        from .runtime import run_flow_once, run_interruptibly

        try:
            asyncio.get_running_loop()
        except RuntimeError:   # Ctrl-C cancels the run (trace "interrupted") and raises KeyboardInterrupt
            result = self.last_run = run_interruptibly(run_flow_once(self.program, self.decl.name, inputs,
                                                                      self.options))
            return result.value   # not last_run's: another thread may have run the flow since
        raise RuntimeError("flow.run() was called inside a running event loop; use `await flow.arun(…)`")

    def as_runnable(self):
        """This flow as a LangChain Runnable: inputs dict (or the one input) in, JSON data out."""
        from .integrations.langchain import flow_runnable

        return flow_runnable(self)

    def __repr__(self) -> str:
        return f"<fmflow.Flow {self.name}({', '.join(self.inputs)}) from {self.program.path}>"


def load(path: str | Path, flow: str | None = None, *, pins: dict[str, int] | None = None,
         model: str | None = None, models: dict[str, str] | None = None, cache: bool = True, trace: bool = True,
         workdir: str | Path = ".", mocks: dict | None = None, max_depth: int | None = None,
         budget=None) -> Flow:
    """Check a flow file and return one of its flows (the only one, or ``flow``).

    ``model`` ("PROVIDER:NAME") answers prompts that name no model; ``models``
    replaces declared models for every run ({"fast": "ollama:llama3.2"});
    ``max_depth`` bounds nested flow calls (default 64); ``budget``: USD that
    each run's model calls may cost (``--budget``), or a
    ``fmflow.runtime.budget.Budget`` that many runs share (a run that would
    pass it raises BudgetExceeded, a FlowRuntimeError, before the call). Raises
    FmflowCheckError with every diagnostic when the file has errors, and
    ValueError for a pin, a model or a depth that cannot apply.
    """
    from .runtime.budget import Budget

    Budget.of(budget)   # a bad amount is refused here, not at the first run
    program = load_checked(path, pins=pins)
    options = _options(program, model, models, max_depth, cache=cache, trace=trace, workdir=workdir, mocks=mocks,
                       budget=budget)
    return Flow(program, flow, options)


def _options(program, model: str | None, models: dict[str, str] | None, max_depth: int | None, *,
             workdir: str | Path, **settings):
    """RunOptions for the API's runs; ValueError for a model choice or a depth that cannot apply."""
    from .runtime import RunOptions
    from .runtime.models import model_choices, unknown_model_names

    choice = model_choices(model, models)
    if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1):
        raise ValueError(f"max_depth must be a whole number of at least 1, got {max_depth!r}")
    problem = unknown_model_names(program, choice.overrides, "models[{name!r}]")
    if problem is not None:
        raise ValueError(problem)
    return RunOptions(workdir=str(workdir), model=choice.default, models=choice.overrides or None,
                      **({"max_depth": max_depth} if max_depth is not None else {}), **settings)


def run_tests(path: str | Path, *, names: list[str] | None = None, record: bool = False,
              pins: dict[str, int] | None = None, model: str | None = None, models: dict[str, str] | None = None,
              max_depth: int | None = None, workdir: str | Path = "."):
    """Run the `test` blocks of a flow file, as `fmflow test` does; returns a TestReport.

    ``names`` runs only the tests of those names (`fmflow test --name`); a name
    the file declares no test of is a ValueError that lists its tests.
    ``record`` asks the real models what no mock or script answers and writes
    their replies to the file's cassette (``FILE.cassette.jsonl``); without it,
    a cassette beside the file answers them. The other options are load()'s.
    """
    import asyncio

    from .runtime import in_own_loop
    from .runtime.testing import run_tests as run

    program = load_checked(path, pins=pins)
    if names is not None:
        if isinstance(names, str):
            raise TypeError("names= takes a list of test names, not one string")
        _check_test_names(program, path, names)
    options = _options(program, model, models, max_depth, cache=False, trace=False, workdir=workdir)
    return asyncio.run(in_own_loop(run(program, options, record=record,
                                       names=set(names) if names is not None else None)))


def _check_test_names(program, path: str | Path, names: list[str]) -> None:
    from .diagnostics import unknown_test_problems

    declared = [d.name for d in program.ctx.module.decls if isinstance(d, ast.TestDecl)]
    listed = f"tests: {', '.join(declared)}" if declared else "it declares no test"
    problems = unknown_test_problems(names, declared, str(path), listed)
    if problems:
        raise ValueError("; ".join(problems))


def load_checked(path: str | Path, pins: dict[str, int] | None = None):
    """The runtime Program of a checked file; FmflowCheckError with every diagnostic when it has errors,
    ValueError for a pin that names no prompt version."""
    import warnings

    from .checks.pins import pin_notes, pin_problems
    from .errors import FmflowCheckError
    from .runtime import Program

    loader, ctx = load_program(path, pins=pins)
    contexts = list(loader.contexts.values())
    problems = pin_problems(contexts, pins or {}, "pins[{name!r}] = {version}")
    if problems:
        raise ValueError("; ".join(problems))
    for note in pin_notes(contexts, pins or {}, "pins[{name!r}] = {version}"):
        warnings.warn(note, stacklevel=3)
    diagnostics = loader.diagnostics()
    if any(d.is_error for d in diagnostics):
        raise FmflowCheckError(diagnostics, loader.sources())
    return Program(loader, ctx)
