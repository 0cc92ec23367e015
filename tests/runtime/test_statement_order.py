"""A flow body whose statements each wait for the one before runs them in order, without a task
per statement; a body with anything that could start earlier keeps running it concurrently."""

from __future__ import annotations

import asyncio
import sys

import pytest
from flowfiles import load

from fmflow.runtime.executor import runs_in_order

TOOLS = '''\
import asyncio

GATE = {}


def gate():
    return GATE.setdefault("event", asyncio.Event())


async def step(x):
    return x + "."


async def waits_for_open(x):
    """Returns only once `opens` has run: a deadlock if the two ran one after the other."""
    await gate().wait()
    return x + "!"


async def opens(x):
    gate().set()
    return x
'''

FLOWS = '''
tool step(x: str) -> str = python("order_tools:step")
tool waits_for_open(x: str) -> str = python("order_tools:waits_for_open")
tool opens(x: str) -> str = python("order_tools:opens")

flow chain(x: str) -> str {
  a = step(x: x)
  b = step(x: a)
  c = step(x: b)
  return c
}

flow independent(x: str) -> str {
  a = waits_for_open(x: x)
  b = opens(x: x)
  return a + b
}

flow piped_argument(x: str) -> str {
  a = step(x: x)
  b = step(x: a | upper)
  return b
}

flow early_argument(x: str) -> str {
  a = waits_for_open(x: x)
  b = step(x: a + opens(x: x))
  return b
}
'''


@pytest.fixture
def flows(tmp_path, monkeypatch):
    (tmp_path / "order_tools.py").write_text(TOOLS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("order_tools", None)
    return lambda name: load(tmp_path, FLOWS, name, trace=False, cache=False)


def test_a_chain_runs_in_order_and_gives_its_result(flows):
    flow = flows("chain")
    assert runs_in_order(flow.decl.body, flow.program.memo)
    assert flow.run(x="a") == "a..."


def test_a_call_inside_an_argument_keeps_the_statements_concurrent(flows):
    flow = flows("piped_argument")   # a filter is a call: the rule stays on the safe side
    assert not runs_in_order(flow.decl.body, flow.program.memo)
    assert flow.run(x="a") == "A.."


def test_statements_that_may_start_earlier_still_run_concurrently(flows):
    for name in ("independent", "early_argument"):
        flow = flows(name)
        assert not runs_in_order(flow.decl.body, flow.program.memo), name

        async def run():
            # If the statements ran one after another, `waits_for_open` would wait for ever.
            return await asyncio.wait_for(flow.arun(x="x"), timeout=30)

        assert asyncio.run(run()).startswith("x!"), name
