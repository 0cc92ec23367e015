"""The final answer streams to `on_text` as the model writes it (what `fmflow run` shows)."""

from __future__ import annotations

import asyncio
import textwrap

from fmflow.api import load_program
from fmflow.providers import get_provider
from fmflow.runtime import Program, RunOptions, run_flow

FLOW = '''
model m {
  provider: "replay"
  options: { responses: ["first draft here", "the final answer is forty two"] }
}
prompt draft(q: str) -> str {
  model: m
  template: "Draft {{ q }}"
}
prompt polish(text: str) -> str {
  model: m
  template: "Polish {{ text }}"
}
flow answer(q: str) -> str {
  rough = draft(q)
  return polish(rough)
}
'''


def _run(tmp_path, on_text):
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(FLOW), encoding="utf-8")
    loader, ctx = load_program(str(path))
    get_provider("replay").reset()
    options = RunOptions(cache=False, trace=False, workdir=str(tmp_path), on_text=on_text)
    return asyncio.run(run_flow(Program(loader, ctx), None, {"q": "x"}, options))


def test_only_the_call_that_gives_the_answer_streams(tmp_path):
    pieces: list[str] = []
    result = _run(tmp_path, pieces.append)
    assert result.value == "the final answer is forty two"
    assert len(pieces) > 1 and "".join(pieces) == result.value  # in pieces, in order, nothing else


def test_without_a_listener_nothing_streams(tmp_path):
    assert _run(tmp_path, None).value == "the final answer is forty two"


ONE_STATEMENT = '''
model m {
  provider: "replay"
  options: { responses: ["streamed answer", "a later answer nobody listens to"] }
}
prompt polish(text: str) -> str {
  model: m
  template: "Polish {{ text }}"
}
flow answer(q: str) -> str {
  return polish(q)
}
'''


def test_a_listener_hears_only_its_own_run_when_runs_share_a_task(tmp_path):
    """A one-statement flow runs its statement in the caller's task: the run's
    listener must not stay set there for the next run of the same task."""
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(ONE_STATEMENT), encoding="utf-8")
    loader, ctx = load_program(str(path))
    get_provider("replay").reset()
    program = Program(loader, ctx)
    heard: list[str] = []

    async def two_runs():
        listening = RunOptions(cache=False, trace=False, workdir=str(tmp_path), on_text=heard.append)
        first = await run_flow(program, None, {"q": "x"}, listening)
        quiet = RunOptions(cache=False, trace=False, workdir=str(tmp_path))
        second = await run_flow(program, None, {"q": "y"}, quiet)
        return first.value, second.value

    first, second = asyncio.run(two_runs())
    assert (first, second) == ("streamed answer", "a later answer nobody listens to")
    assert "".join(heard) == "streamed answer"
