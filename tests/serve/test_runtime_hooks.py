"""The run options a server relies on: a chosen run id, usage reports, one cache shared by many runs."""

from __future__ import annotations

import asyncio

from conftest import load_catalog
from servers import write_flows

from fmflow.runtime import RunOptions, run_flow
from fmflow.runtime.cache import DEFAULT_PATH, ResponseCache


def _program(tmp_path, name: str):
    return load_catalog(write_flows(tmp_path)).get(name).program


def test_the_trace_takes_the_run_id_given(tmp_path):
    program = _program(tmp_path, "hello")
    options = RunOptions(workdir=str(tmp_path), run_id="chosen-id")
    result = asyncio.run(run_flow(program, "hello", {"q": "x"}, options))
    assert result.run_id == "chosen-id"
    assert (tmp_path / ".fmflow" / "runs" / "chosen-id.jsonl").is_file()


def test_each_model_reply_is_reported_with_its_usage_and_cache_hit(tmp_path):
    program = _program(tmp_path, "recall")
    seen: list[tuple] = []
    options = RunOptions(workdir=str(tmp_path), trace=False,
                         on_usage=lambda response, hit: seen.append((response.text, response.tokens_out, hit)))
    for _ in range(2):
        asyncio.run(run_flow(program, "recall", {"q": "same"}, options))
    assert seen == [("first answer", 2, False), ("first answer", 2, True)]


def test_a_shared_cache_serves_many_runs_and_stays_open(tmp_path):
    program = _program(tmp_path, "recall")
    cache = ResponseCache(tmp_path / DEFAULT_PATH)
    try:
        options = RunOptions(workdir=str(tmp_path), trace=False, shared_cache=cache)
        answers = [asyncio.run(run_flow(program, "recall", {"q": "same"}, options)).value for _ in range(2)]
        assert answers == ["first answer", "first answer"]
        assert cache.available and len(cache) == 1  # the runs used it and left it open
        off = RunOptions(workdir=str(tmp_path), trace=False, cache=False, shared_cache=cache)
        assert asyncio.run(run_flow(program, "recall", {"q": "same"}, off)).value == "second answer"
    finally:
        cache.close()
