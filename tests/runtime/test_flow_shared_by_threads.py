"""One loaded flow run by many threads at once (LangChain's `batch`, a threaded server): each
call gets its own run's result, whatever the others do meanwhile."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from flowfiles import load

FLOW = '''
tool echo(x: str) -> str = python("thread_tools:echo")

flow same(x: str) -> str {
  return echo(x: x)
}
'''

TOOLS = '''
import time

def echo(x):
    time.sleep(0.001 * (len(x) % 3))
    return x
'''


def test_each_thread_gets_the_result_of_its_own_run(tmp_path):
    (tmp_path / "thread_tools.py").write_text(TOOLS, encoding="utf-8")
    flow = load(tmp_path, FLOW, cache=False)   # traces on: finishing one widens the window between runs
    inputs = [f"input-{i}" for i in range(160)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda x: flow.run(x=x), inputs))
    assert results == inputs
