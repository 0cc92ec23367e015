"""The Python API behind the CLI, the language server and the runtime."""

from __future__ import annotations

from pathlib import Path

from . import ast
from .checks.context import CheckContext
from .checks.loader import ModuleLoader
from .diagnostics import Diagnostic
from .errors import FmflowSyntaxError
from .parser import parse_text


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
    loader, _ctx = load_program(path, pins=pins)
    return loader.diagnostics()


def check_text(text: str, path: str = "<string>", pins: dict[str, int] | None = None) -> list[Diagnostic]:
    """Diagnostics of ``text`` checked as if it were the file at ``path``."""
    loader, _ctx = load_program(path, text=text, pins=pins)
    return loader.diagnostics()


class Flow:
    """A checked flow ready to run: ``flow.run(**inputs)`` or ``await flow.arun(**inputs)``.

    Results are pydantic models for declared types and plain values otherwise.
    ``last_run`` holds the run id and trace path of the latest run.
    """

    def __init__(self, program, name: str | None, options) -> None:
        self.program = program
        self.decl = program.flow(name)
        self.options = options
        self.last_run = None

    @property
    def name(self) -> str:
        return self.decl.name

    @property
    def inputs(self) -> list[str]:
        return [p.name for p in self.decl.params]

    async def arun(self, **inputs):
        from .runtime import run_flow

        self.last_run = await run_flow(self.program, self.decl.name, inputs, self.options)
        return self.last_run.value

    def run(self, **inputs):
        import asyncio

        from .runtime import run_flow_once, run_interruptibly

        try:
            asyncio.get_running_loop()
        except RuntimeError:   # Ctrl-C cancels the run (trace "interrupted") and raises KeyboardInterrupt
            self.last_run = run_interruptibly(run_flow_once(self.program, self.decl.name, inputs, self.options))
            return self.last_run.value
        raise RuntimeError("flow.run() was called inside a running event loop; use `await flow.arun(…)`")

    def as_runnable(self):
        """This flow as a LangChain Runnable: inputs dict (or the one input) in, JSON data out."""
        from .integrations.langchain import flow_runnable

        return flow_runnable(self)

    def __repr__(self) -> str:
        return f"<fmflow.Flow {self.name}({', '.join(self.inputs)}) from {self.program.path}>"


def load(path: str | Path, flow: str | None = None, *, pins: dict[str, int] | None = None,
         model: str | None = None, cache: bool = True, trace: bool = True, workdir: str | Path = ".",
         mocks: dict | None = None, budget=None) -> Flow:
    """Check a flow file and return one of its flows (the only one, or ``flow``).

    ``budget``: USD that each run's model calls may cost (``--budget``), or a
    ``fmflow.runtime.budget.Budget`` that many runs share; a run that would
    pass it raises BudgetExceeded (a FlowRuntimeError) before the call.
    Raises FmflowCheckError with every diagnostic when the file has errors.
    """
    from .runtime import RunOptions
    from .runtime.budget import Budget

    Budget.of(budget)   # a bad amount is refused here, not at the first run
    options = RunOptions(cache=cache, trace=trace, workdir=str(workdir), model=model, mocks=mocks, budget=budget)
    return Flow(load_checked(path, pins=pins), flow, options)


def load_checked(path: str | Path, pins: dict[str, int] | None = None):
    """The runtime Program of a checked file; FmflowCheckError with every diagnostic when it has errors."""
    from .errors import FmflowCheckError
    from .runtime import Program

    loader, ctx = load_program(path, pins=pins)
    diagnostics = loader.diagnostics()
    if any(d.is_error for d in diagnostics):
        raise FmflowCheckError(diagnostics, loader.sources())
    return Program(loader, ctx)
