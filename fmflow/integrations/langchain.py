"""fmflow inside LangChain, and LangChain tools inside fmflow.

``Flow.as_runnable()`` (``flow_runnable(flow)``) wraps a loaded flow as a
langchain-core Runnable named after the flow, usable anywhere LCEL takes one::

    chain = RunnableLambda(lambda q: {"question": q}) | flow.as_runnable() | RunnableLambda(show)
    chain.invoke("…"); chain.batch([...]); await chain.ainvoke("…"); chain.stream("…")

- Input: a dict of the flow's inputs. A flow with exactly one input also
  takes the bare value (a dict whose only key is that input's name is still
  read as the inputs dict). A pydantic model is read as its dict.
- Output: the flow's result as plain JSON data — declared types (pydantic
  models) become dicts, enum values their names, lists and dicts recursively.
- ``invoke`` runs the flow with ``Flow.run`` (its own event loop; LangChain's
  ``batch`` calls it from worker threads, so a batch runs concurrently); when
  called on a thread whose event loop is running, it runs the flow on a
  helper thread instead of failing. ``ainvoke`` awaits ``Flow.arun`` on the
  caller's loop, so ``abatch`` runs the flows concurrently on that loop.
- ``stream``/``astream`` yield the final result once: token streaming of the
  flow's model calls is not exposed yet.
- LangChain callbacks (tracers such as LangSmith) see one "chain" run per call.

``langchain_tool(target, folder)`` lets ``tool t(x: str) -> str =
python("module:attr")`` name a LangChain ``BaseTool`` (e.g. made with
``@tool``): the runtime then awaits ``tool.ainvoke(arguments)``.

langchain-core is imported only when a Runnable is made; the tool check costs
nothing when it was never imported (a module holding a BaseTool imports it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import sys
from typing import Any, Callable

__all__ = ["FlowRunnable", "flow_runnable", "langchain_tool"]


# ------------------------------------------------------------ LangChain tools as fmflow tools

def _is_langchain_tool(value: Any) -> bool:
    base = sys.modules.get("langchain_core.tools.base")  # imported by whatever module made the tool
    return base is not None and isinstance(value, base.BaseTool)


def _plain(value: Any) -> Any:
    """Arguments as plain data (fmflow passes declared types as pydantic models; the tool validates its own)."""
    from ..runtime.outputs import to_jsonable

    return to_jsonable(value)


def langchain_tool(target: str, folder: str) -> Callable[..., Any] | None:
    """An async function calling the LangChain BaseTool named ``module:attr``, or None if it names none.

    Importing the module fails as for any python("…") tool; a missing
    attribute returns None so that the ordinary loader reports it.
    """
    from ..runtime.errors import FlowRuntimeError
    from ..runtime.pyimport import load_object

    try:
        value = load_object(target, folder)
    except FlowRuntimeError:
        return None  # the ordinary loader reports it
    if not _is_langchain_tool(value):
        return None
    tool = value

    async def call_tool(**arguments: Any) -> Any:
        return await tool.ainvoke({name: _plain(v) for name, v in arguments.items()})

    return call_tool


# ------------------------------------------------------------ flows as Runnables

def flow_runnable(flow) -> Any:
    """The flow as a LangChain Runnable (module doc)."""
    return _runnable_class()(flow=flow)


def __getattr__(name: str) -> Any:
    if name == "FlowRunnable":
        return _runnable_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def flow_inputs(flow, value: Any) -> dict[str, Any]:
    """The keyword inputs of a flow from a Runnable's input."""
    names = flow.inputs
    if hasattr(value, "model_dump") and callable(value.model_dump) and not isinstance(value, type):
        value = value.model_dump()
    if len(names) == 1 and not (isinstance(value, dict) and set(value) == {names[0]}):
        return {names[0]: value}
    if isinstance(value, dict):
        return dict(value)
    if not names:
        if value is None:
            return {}
        raise TypeError(f"flow '{flow.name}' takes no inputs; give {{}} or None, not a {type(value).__name__}")
    raise TypeError(f"flow '{flow.name}' takes the inputs {', '.join(names)}: give a dict of them, "
                    f"not a {type(value).__name__}")


def _result(value: Any) -> Any:
    from ..runtime.outputs import to_jsonable

    return to_jsonable(value)


@functools.cache
def _runnable_class() -> type:
    from langchain_core.runnables import RunnableConfig, RunnableSerializable
    from pydantic import BaseModel, ConfigDict, Field, create_model

    class FlowRunnable(RunnableSerializable[Any, Any]):
        """A fmflow flow as a Runnable: dict of inputs (or the one input) in, JSON data out."""

        flow: Any = Field(exclude=True)

        model_config = ConfigDict(arbitrary_types_allowed=True)

        def __init__(self, flow, **kwargs: Any) -> None:
            kwargs.setdefault("name", flow.name)
            super().__init__(flow=flow, **kwargs)

        @classmethod
        def is_lc_serializable(cls) -> bool:
            return False  # a loaded program is not JSON

        def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
            fields = {name: (Any, ...) for name in self.flow.inputs}
            return create_model(f"{self.flow.name}_input", **fields)

        def _run_sync(self, value: Any) -> Any:
            inputs = flow_inputs(self.flow, value)
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return _result(self.flow.run(**inputs))
            # A loop runs on this thread (a notebook, an async caller using invoke): Flow.run
            # refuses to nest, so the flow gets its own loop on a helper thread.
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                return _result(pool.submit(self.flow.run, **inputs).result())

        async def _run_async(self, value: Any) -> Any:
            return _result(await self.flow.arun(**flow_inputs(self.flow, value)))

        def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
            return self._call_with_config(self._run_sync, input, config, run_type="chain")

        async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
            return await self._acall_with_config(self._run_async, input, config, run_type="chain")

        def __repr__(self) -> str:
            return f"FlowRunnable({self.flow!r})"

    return FlowRunnable
