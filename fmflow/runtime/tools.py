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
import weakref
from typing import Any, Callable

from .. import ast
from .deadlines import deadline
from .errors import CallFailed, FlowRuntimeError, describe
from .evaluate import Evaluator
from .pyimport import is_imported, load_callable

DEFAULT_TIMEOUT = 60.0   # seconds: python("…") without `timeout:`
MAX_WORKERS = 32         # sync tools running at once (abandoned calls do not count)


def tool_label(run, decl: ast.ToolDecl) -> str:
    """``tool 'x' (my_tools:f) at flow.fmflow:12``: what a message about the tool names."""
    return f"{decl.kind} '{decl.name}' ({target_of(decl)}) at {run.program.context_of(decl).path}:{decl.span.line}"


def target_of(decl: ast.ToolDecl) -> str:
    return decl.impl.args[0].value.value


async def call_tool(run, decl: ast.ToolDecl, args: dict[str, Any], returns) -> Any:
    """Call the tool's implementation with validated arguments; its result validated against ``returns``."""
    memo = run.program.memo
    timeout = memo.get(("tool timeout", id(decl)))
    if timeout is None:
        timeout = await _timeout_of(run, decl)
    limit = deadline(timeout)
    try:
        async with limit:
            found = memo.get(("tool", id(decl)))   # (the callable, whether it is async)
            if found is None:
                found = await _resolve(run, decl)
            function, is_async = found
            result = await function(**args) if is_async else await _in_thread(function, args)
    except TimeoutError as error:
        if limit.expired():
            raise CallFailed(f"{tool_label(run, decl)} did not finish within its timeout of {timeout:g}s "
                             f'(raise it with python("{target_of(decl)}", timeout: …))') from None
        raise CallFailed(f"{tool_label(run, decl)} failed: {describe(error)}") from error
    except (asyncio.CancelledError, FlowRuntimeError):
        raise
    except SystemExit as error:
        raise CallFailed(f"{tool_label(run, decl)} called sys.exit({error.code!r}); "
                         "a tool must return or raise") from None
    except BaseException as error:   # KeyboardInterrupt or GeneratorExit raised by the tool itself too
        raise CallFailed(f"{tool_label(run, decl)} failed: {describe(error)}") from error
    return run.validate(returns, result, lambda: f"the result of {tool_label(run, decl)}")


async def _resolve(run, decl: ast.ToolDecl) -> tuple[Callable[..., Any], bool]:
    """The tool's callable and whether it is a coroutine function, kept by the program once
    found (resolving it reads the file system)."""
    if is_imported(target_of(decl), run.program.folder_of(decl)):
        function = _load(run, decl)
    else:   # a first import may be slow or hang: on a worker thread, within the timeout
        function = await _in_thread(_load, {"run": run, "decl": decl})
    found = run.program.memo[("tool", id(decl))] = (function, _is_async(function))
    return found


def _load(run, decl: ast.ToolDecl) -> Callable[..., Any]:
    from ..integrations.langchain import langchain_tool  # a LangChain BaseTool: awaits tool.ainvoke(args)

    target, folder = target_of(decl), run.program.folder_of(decl)
    return langchain_tool(target, folder) or load_callable(target, folder)


async def _timeout_of(run, decl: ast.ToolDecl) -> float:
    """The tool's `timeout:`, kept by the program when it is the same for every call (call_tool
    looks there first)."""
    key = ("tool timeout", id(decl))
    arg = next((a for a in decl.impl.args if a.name == "timeout"), None)
    if arg is None:
        run.program.memo[key] = DEFAULT_TIMEOUT
        return DEFAULT_TIMEOUT
    value = await Evaluator(run, decl).eval(arg.value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise FlowRuntimeError(f"{tool_label(run, decl)}: timeout must be a duration longer than 0s, got {value!r}")
    if isinstance(arg.value, ast.Literal):   # the same for every call (an env() may differ per run)
        run.program.memo[key] = float(value)
    return float(value)


async def _in_thread(function: Callable[..., Any], args: dict[str, Any]) -> Any:
    """Call a sync callable on a worker thread (call_tool awaits async ones itself)."""
    loop = asyncio.get_running_loop()
    job = _Job(loop, loop.create_future(), contextvars.copy_context(), function, args)
    _WORKERS.submit(job)
    try:
        ok, value, leaving = await job.future
    except BaseException:
        job.abandon()
        raise
    if leaving is not None:   # its worker had nothing more to do: it is ending now, and no thread stays behind
        leaving.join()
    if not ok:
        raise value
    if inspect.isawaitable(value):   # a sync callable that hands back a coroutine (functools.partial …)
        return await value
    return value


_ASYNC: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


def _is_async(function: Callable[..., Any]) -> bool:
    """inspect.iscoroutinefunction, remembered per function (it unwraps partials and methods each time)."""
    try:
        return _ASYNC[function]
    except (KeyError, TypeError):
        found = inspect.iscoroutinefunction(function)
        try:
            _ASYNC[function] = found
        except TypeError:   # not weakly referenceable
            pass
        return found


class _Job:
    """One sync call handed to a worker thread, and how its outcome gets back to the loop."""

    def __init__(self, loop, future, context, function, args) -> None:
        self.loop, self.future, self.context = loop, future, context
        self.function, self.args = function, args
        self.started = self.finished = self.abandoned = self.released = False
        self._lock = threading.Lock()

    def run(self) -> tuple | None:
        """The call's outcome ``(ok, value)``; None when it was abandoned before it started."""
        with self._lock:
            if self.abandoned:
                return None
            self.started = True
        try:
            outcome = (True, self.context.run(self.function, **self.args))
        except BaseException as error:   # SystemExit too: it must end this call, not the worker
            outcome = (False, error)
        with self._lock:
            self.finished = True
        return outcome

    def settle(self, outcome: tuple, leaving: threading.Thread | None) -> None:
        try:
            self.loop.call_soon_threadsafe(self._settle, (*outcome, leaving))
        except RuntimeError:             # the loop is closed: nobody waits any more
            pass

    def _settle(self, outcome) -> None:
        if not self.future.done():
            self.future.set_result(outcome)

    def abandon(self) -> None:
        """The caller stopped waiting (timeout, cancel): a queued call never runs, and a
        running one gives its worker's place to another thread."""
        with self._lock:
            self.abandoned = True
            self.released = self.started and not self.finished
        if self.released:
            _WORKERS.release()


class _Workers:
    """Daemon threads that run sync tools, started as calls come and ending as soon as
    no call waits: nothing stays behind once a run is over, and a tool that never
    returns does not hold the process (asyncio's default executor joins its threads
    when the loop closes, so Ctrl-C on a sleeping tool would wait for it).

    ``_live`` counts the threads serving calls (at most ``limit``), ``_waiting`` the
    queued calls no thread has promised to take yet.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting = self._live = 0

    def submit(self, job: _Job) -> None:
        with self._lock:
            self._jobs.put(job)
            if self._live < self.limit:
                self._start()       # the new thread takes a call
            else:
                self._waiting += 1  # a thread takes it when its call ends

    def release(self) -> None:
        """A thread is stuck in an abandoned call: another takes its place."""
        with self._lock:
            self._live -= 1
            if self._waiting > 0 and self._live < self.limit:
                self._waiting -= 1
                self._start()

    def _start(self) -> None:
        self._live += 1
        threading.Thread(target=self._work, name="fmflow-tool", daemon=True).start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            outcome = job.run()
            if job.released:
                return   # abandoned while it ran: this thread's place went to another
            with self._lock:
                following = self._waiting > 0
                if following:
                    self._waiting -= 1
                else:
                    self._live -= 1
            if outcome is not None:
                job.settle(outcome, None if following else threading.current_thread())
            if not following:
                return


_WORKERS = _Workers(MAX_WORKERS)
