"""Tools and filters: ``python("module:attr", timeout: 10s)`` called by a flow, a pipe or an agent.

- A sync callable runs on a daemon worker thread, so the event loop goes on
  and a tool that never returns cannot keep the process alive: a thread
  cannot be killed, so a timed-out or cancelled call is abandoned, not
  awaited (Ctrl-C ends the run at once).
- Every call is bounded by its ``timeout:`` (default 60s).
- Whatever the callable does — raise, call ``sys.exit()``, raise
  KeyboardInterrupt, return a cycle or an arbitrary object — becomes an error
  naming the tool, its implementation and where it is declared; the run then
  fails as for any failed call, or an agent tells its model.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import queue
import threading
from typing import Any, Callable

from .. import ast
from .errors import CallFailed, FlowRuntimeError, describe
from .evaluate import Evaluator
from .pyimport import load_callable

DEFAULT_TIMEOUT = 60.0   # seconds: python("…") without `timeout:`
MAX_WORKERS = 32         # sync tools running at once (abandoned calls do not count)


def tool_label(run, decl: ast.ToolDecl) -> str:
    """``tool 'x' (my_tools:f) at flow.fmflow:12``: what a message about the tool names."""
    return f"{decl.kind} '{decl.name}' ({target_of(decl)}) at {run.program.context_of(decl).path}:{decl.span.line}"


def target_of(decl: ast.ToolDecl) -> str:
    return decl.impl.args[0].value.value


async def call_tool(run, decl: ast.ToolDecl, args: dict[str, Any], returns) -> Any:
    """Call the tool's implementation with validated arguments; its result validated against ``returns``."""
    label = tool_label(run, decl)
    function = _load(run, decl)
    timeout = await _timeout_of(run, decl, label)
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            result = await _invoke(function, args)
    except TimeoutError as error:
        if deadline.expired():
            raise CallFailed(f"{label} did not finish within its timeout of {timeout:g}s "
                             f'(raise it with python("{target_of(decl)}", timeout: …))') from None
        raise CallFailed(f"{label} failed: {describe(error)}") from error
    except (asyncio.CancelledError, FlowRuntimeError):
        raise
    except SystemExit as error:
        raise CallFailed(f"{label} called sys.exit({error.code!r}); a tool must return or raise") from None
    except BaseException as error:   # KeyboardInterrupt or GeneratorExit raised by the tool itself too
        raise CallFailed(f"{label} failed: {describe(error)}") from error
    return run.validate(returns, result, f"the result of {label}")


def _load(run, decl: ast.ToolDecl) -> Callable[..., Any]:
    from ..integrations.langchain import langchain_tool  # a LangChain BaseTool: awaits tool.ainvoke(args)

    target, folder = target_of(decl), run.program.folder_of(decl)
    return langchain_tool(target, folder) or load_callable(target, folder)


async def _timeout_of(run, decl: ast.ToolDecl, label: str) -> float:
    arg = next((a for a in decl.impl.args if a.name == "timeout"), None)
    if arg is None:
        return DEFAULT_TIMEOUT
    value = await Evaluator(run, decl).eval(arg.value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise FlowRuntimeError(f"{label}: timeout must be a duration longer than 0s, got {value!r}")
    return float(value)


async def _invoke(function: Callable[..., Any], args: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(function):
        return await function(**args)
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()
    job = _Job(loop, future, contextvars.copy_context(), function, args)
    _WORKERS.submit(job)
    try:
        ok, value = await future
    except BaseException:
        job.abandon()
        raise
    if not ok:
        raise value
    if inspect.isawaitable(value):   # a sync callable that hands back a coroutine (functools.partial …)
        return await value
    return value


class _Job:
    """One sync call handed to a worker thread, and how its outcome gets back to the loop."""

    def __init__(self, loop, future, context, function, args) -> None:
        self.loop, self.future, self.context = loop, future, context
        self.function, self.args = function, args
        self.started = self.finished = self.abandoned = False
        self._lock = threading.Lock()

    def run(self) -> bool:
        """Run the call; False when the caller gave up on it while it ran (its
        worker's place went to another thread, so this one ends)."""
        with self._lock:
            if self.abandoned:
                return True
            self.started = True
        try:
            outcome = (True, self.context.run(self.function, **self.args))
        except BaseException as error:   # SystemExit too: it must end this call, not the worker
            outcome = (False, error)
        with self._lock:
            self.finished = True
            if self.abandoned:
                return False
        try:
            self.loop.call_soon_threadsafe(self._settle, outcome)
        except RuntimeError:             # the loop is closed: nobody waits any more
            pass
        return True

    def _settle(self, outcome) -> None:
        if not self.future.done():
            self.future.set_result(outcome)

    def abandon(self) -> None:
        """The caller stopped waiting (timeout, cancel): a queued call never runs, and a
        running one gives its worker's place to another thread."""
        with self._lock:
            self.abandoned = True
            stuck = self.started and not self.finished
        if stuck:
            _WORKERS.release()


class _Workers:
    """Daemon threads that run sync tools. Daemon threads do not hold the process
    at exit (asyncio's default executor joins its threads, so Ctrl-C on a sleeping
    tool would wait for it).

    ``_free`` counts workers waiting for a job nobody has claimed, ``_unclaimed``
    jobs queued with no worker promised to them: a job either claims a free
    worker or starts a new one (up to ``limit``).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._free = self._unclaimed = self._live = 0

    def submit(self, job: _Job) -> None:
        with self._lock:
            self._jobs.put(job)
            if self._free > 0:
                self._free -= 1
                return
            self._unclaimed += 1
            if self._live < self.limit:
                self._live += 1
                threading.Thread(target=self._work, name="fmflow-tool", daemon=True).start()

    def release(self) -> None:
        """A worker is stuck in an abandoned call: let another take its place."""
        with self._lock:
            self._live -= 1

    def _work(self) -> None:
        while True:
            with self._lock:
                if self._unclaimed > 0:
                    self._unclaimed -= 1
                else:
                    self._free += 1
            if not self._jobs.get().run():
                return


_WORKERS = _Workers(MAX_WORKERS)
