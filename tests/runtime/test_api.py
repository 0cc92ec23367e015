"""The Python API (`fmflow.load` → Flow), the response cache and run traces."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel

import fmflow
from fmflow.errors import FmflowCheckError
from fmflow.providers import get_provider
from fmflow.runtime.errors import FlowRuntimeError
from flowfiles import load, write

SCRIPTED = 'env("FMFLOW_TEST_PROVIDER", "scripted")'
SECRET = "sk-very-secret-123"


def records(flow) -> list[dict]:
    with open(flow.last_run.trace_path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def spans(flow, kind: str | None = None) -> list[dict]:
    return [r for r in records(flow) if r["type"] == "span" and (kind is None or r["kind"] == kind)]


# ------------------------------------------------------------ results

TYPED = '''
    enum Category { billing, bug, other }
    type Source {
      id: str
      score: float
    }
    type Answer {
      text: str
      category: Category
      sources: list[Source]
      note: str?
    }
    model m {
      provider: "replay"
      options: { responses: [{ json: { text: "t", category: "bug", sources: [{ id: "d1", score: 0.5 }] } }] }
    }
    prompt answer(q: str) -> Answer {
      model: m
      template: "{{ q }}"
    }
    flow typed(q: str) -> Answer {
      return answer(q)
    }
    flow many(q: str) -> list[Source] {
      return [Source(id: q, score: 1.0), Source(id: q + "2", score: 0.0)]
    }
    flow plain(q: str) -> dict[int] {
      return { n: len(q) }
    }
'''


def test_results_are_pydantic_models_for_declared_types(tmp_path):
    answer = load(tmp_path, TYPED, "typed").run(q="q")
    assert isinstance(answer, BaseModel)
    assert type(answer).__name__ == "Answer"
    assert answer.category == "bug"
    assert isinstance(answer.sources[0], BaseModel) and answer.sources[0].id == "d1"
    assert answer.note is None
    assert answer.model_dump(mode="json") == {"text": "t", "category": "bug",
                                              "sources": [{"id": "d1", "score": 0.5}], "note": None}


def test_lists_of_declared_types_and_plain_values(tmp_path):
    sources = load(tmp_path, TYPED, "many").run(q="x")
    assert [type(s).__name__ for s in sources] == ["Source", "Source"]
    assert [s.id for s in sources] == ["x", "x2"]
    assert load(tmp_path, TYPED, "plain").run(q="abc") == {"n": 3}


def test_arun_and_last_run(tmp_path):
    flow = load(tmp_path, TYPED, "plain")
    assert flow.last_run is None
    assert asyncio.run(flow.arun(q="ab")) == {"n": 2}
    run = flow.last_run
    assert run.run_id and run.trace_path
    assert run.trace_path.endswith(f"{run.run_id}.jsonl")
    assert (tmp_path / ".fmflow" / "runs" / f"{run.run_id}.jsonl").is_file()
    flow.run(q="abc")
    assert flow.last_run.run_id != run.run_id


def test_run_inside_a_running_loop_raises_a_clear_error(tmp_path):
    flow = load(tmp_path, TYPED, "plain")

    async def main():
        with pytest.raises(RuntimeError) as info:
            flow.run(q="x")
        return str(info.value)

    message = asyncio.run(main())
    assert "event loop" in message and "arun" in message


def test_load_of_a_file_with_errors_lists_every_diagnostic(tmp_path):
    path = write(tmp_path, '''
        flow f(question: str) -> int {
          a = quesiton
          return undefined_name + 1
        }
    ''')
    with pytest.raises(FmflowCheckError) as info:
        fmflow.load(path, workdir=tmp_path)
    diagnostics = [d for d in info.value.diagnostics if d.is_error]
    assert len(diagnostics) >= 2
    assert {d.code for d in diagnostics} >= {"E101"}
    messages = " ".join(d.message for d in diagnostics)
    assert "quesiton" in messages and "undefined_name" in messages
    assert str(path) in str(info.value) or "flow.fmflow" in str(info.value)
    assert not (tmp_path / ".fmflow").exists()


def test_load_of_a_syntax_error_raises_check_error(tmp_path):
    path = write(tmp_path, "flow f( -> str {\n")
    with pytest.raises(FmflowCheckError) as info:
        fmflow.load(path, workdir=tmp_path)
    assert any(d.code == "E001" for d in info.value.diagnostics)


def test_load_picks_a_flow_by_name(tmp_path):
    path = write(tmp_path, TYPED)
    assert fmflow.load(path, "plain", workdir=tmp_path).name == "plain"
    with pytest.raises(Exception) as info:
        fmflow.load(path, workdir=tmp_path)  # several flows and none chosen
    assert "plain" in str(info.value) and "typed" in str(info.value)
    with pytest.raises(Exception) as info:
        fmflow.load(path, "nope", workdir=tmp_path)
    assert "nope" in str(info.value)


def test_inputs_are_checked(tmp_path):
    flow = load(tmp_path, TYPED, "plain")
    with pytest.raises(FlowRuntimeError, match="'extra'"):
        flow.run(q="x", extra=1)
    with pytest.raises(FlowRuntimeError, match="'q'"):
        flow.run()
    with pytest.raises(FlowRuntimeError, match="input 'q'"):
        flow.run(q=12)


def test_json_inputs_become_declared_types(tmp_path):
    flow = load(tmp_path, '''
        enum Category { billing, bug, other }
        type Ticket {
          title: str
          category: Category
        }
        flow f(tickets: list[Ticket]) -> list[str] {
          return [t.title + ":" + str(t.category) for t in tickets if t.category != Category.other]
        }
    ''')
    assert flow.run(tickets=[{"title": "a", "category": "bug"}, {"title": "b", "category": "other"}]) == ["a:bug"]
    with pytest.raises(FlowRuntimeError):
        flow.run(tickets=[{"title": "a", "category": "nonsense"}])


def test_default_model_answers_prompts_without_a_model(tmp_path, monkeypatch):
    text = '''
        prompt p(x: str) -> str {
          template: "echo {{ x }}"
        }
        flow f(x: str) -> str {
          return p(x)
        }
    '''
    assert load(tmp_path, text, model="replay:echo").run(x="hi") == "echo hi"
    monkeypatch.setenv("FMFLOW_MODEL", "replay:echo")
    assert load(tmp_path, text).run(x="env") == "echo env"
    declared = text + '''
        model default {
          provider: "replay"
          options: { responses: ["declared"] }
        }
    '''
    # A model declared as `default` comes before --model and FMFLOW_MODEL.
    assert load(tmp_path, declared, model="replay:echo").run(x="x") == "declared"


def test_mocks_answer_calls_without_a_model(tmp_path, scripted):
    provider = scripted(["from the model"])
    text = f'''
        model m {{ provider: {SCRIPTED} }}
        prompt p(x: str) -> str {{
          model: m
          template: "{{{{ x }}}}"
        }}
        flow f(x: str) -> str {{
          return p(x) + "!"
        }}
    '''
    assert load(tmp_path, text, mocks={"p": "mocked"}).run(x="q") == "mocked!"
    with pytest.raises(FlowRuntimeError, match="not mocked"):
        load(tmp_path, text, mocks={}).run(x="q")
    assert provider.requests == []


# ------------------------------------------------------------ cache

CACHED = '''
    model m {
      provider: PROVIDER
      temperature: TEMPERATURE
      EXTRA
    }
    prompt p(x: str) -> str {
      model: m
      template: "{{ x }}"
    }
    flow f(x: str) -> str {
      return p(x)
    }
'''


def cached_flow(tmp_path, temperature="0", extra="", **kwargs):
    text = CACHED.replace("PROVIDER", SCRIPTED).replace("TEMPERATURE", temperature).replace("EXTRA", extra)
    return load(tmp_path, text, **kwargs)


def test_cache_file_location(tmp_path, scripted):
    scripted(["one"])
    cached_flow(tmp_path).run(x="q")
    assert (tmp_path / ".fmflow" / "cache").is_dir()


def test_second_run_at_temperature_0_hits_the_cache(tmp_path, scripted):
    provider = scripted(["first", "second"])
    flow = cached_flow(tmp_path)
    assert flow.run(x="q") == "first"
    [model] = spans(flow, "model")
    assert model["cache_hit"] is False
    assert flow.run(x="q") == "first"
    [model] = spans(flow, "model")
    assert model["cache_hit"] is True
    assert len(provider.requests) == 1
    # A new load of the same file, in the same workdir, hits it too.
    again = cached_flow(tmp_path)
    assert again.run(x="q") == "first"
    assert len(provider.requests) == 1
    # Another input is another request.
    assert flow.run(x="other") == "second"
    assert len(provider.requests) == 2


def test_cache_false_in_load_does_not_cache(tmp_path, scripted):
    provider = scripted(["first", "second"])
    flow = cached_flow(tmp_path, cache=False)
    assert [flow.run(x="q"), flow.run(x="q")] == ["first", "second"]
    assert len(provider.requests) == 2
    assert spans(flow, "model")[0]["cache_hit"] is False


def test_cache_false_in_the_model_block_does_not_cache(tmp_path, scripted):
    provider = scripted(["first", "second"])
    flow = cached_flow(tmp_path, extra="cache: false")
    assert [flow.run(x="q"), flow.run(x="q")] == ["first", "second"]
    assert len(provider.requests) == 2


def test_no_cache_above_temperature_0_unless_asked(tmp_path, scripted):
    provider = scripted(["first", "second", "third"])
    flow = cached_flow(tmp_path, temperature="0.7")
    assert [flow.run(x="q"), flow.run(x="q")] == ["first", "second"]
    forced = cached_flow(tmp_path, temperature="0.7", extra="cache: true")
    assert [forced.run(x="q"), forced.run(x="q")] == ["third", "third"]
    assert len(provider.requests) == 3


def test_a_rejected_answer_is_not_cached(tmp_path, scripted):
    provider = scripted(["not json", '{"n": 1}', '{"n": 2}'])
    flow = load(tmp_path, f'''
        type N {{
          n: int
        }}
        model m {{
          provider: {SCRIPTED}
          temperature: 0
        }}
        prompt p(x: str) -> N {{
          model: m
          template: "{{{{ x }}}}"
          on_fail: default(N(n: -1))
        }}
        flow f(x: str) -> int {{
          return p(x).n
        }}
    ''')
    assert flow.run(x="q") == -1
    assert flow.run(x="q") == 1
    assert flow.run(x="q") == 1
    assert len(provider.requests) == 2


# ------------------------------------------------------------ traces

TRACED = '''
    model m {
      provider: "replay"
      options: { responses: [{ text: "drafted", tokens_in: 11, tokens_out: 3 }] }
    }
    prompt draft@1(topic: str) -> str {
      model: m
      template: "Old {{ topic }}"
    }
    prompt draft@2(topic: str) -> str {
      model: m
      template: "Write about {{ topic }}"
    }
    flow f(topic: str) -> str {
      clean = topic | strip
      if len(clean) > 0 {
        text = draft(clean)
      } else {
        text = "nothing"
      }
      return text + "."
    }
'''


def test_a_run_writes_a_trace_with_a_span_per_statement_and_call(tmp_path):
    flow = load(tmp_path, TRACED)
    assert flow.run(topic=" cats ") == "drafted."
    path = tmp_path / ".fmflow" / "runs" / f"{flow.last_run.run_id}.jsonl"
    assert str(path) == str(flow.last_run.trace_path) or path.samefile(flow.last_run.trace_path)
    lines = records(flow)
    assert lines[0]["type"] == "run" and lines[0]["flow"] == "f"
    assert lines[-1]["type"] == "end" and lines[-1]["status"] == "ok"

    by_kind: dict[str, list[dict]] = {}
    for span in spans(flow):
        by_kind.setdefault(span["kind"], []).append(span)
    assert [s["name"] for s in by_kind["flow"]] == ["f"]
    assert sorted((s["name"], s["line"]) for s in by_kind["assign"]) == [("clean", 15), ("text", 17)]
    assert [s["line"] for s in by_kind["return"]] == [21]
    assert [s["line"] for s in by_kind["branch"]] == [16]
    [prompt] = by_kind["prompt"]
    assert prompt["name"] == "draft" and prompt["inputs"] == {"topic": "cats"}
    [model] = by_kind["model"]
    assert model["prompt"]["name"] == "draft" and model["prompt"]["version"] == 2
    assert model["prompt"]["hash"].startswith("sha256:")
    assert (model["tokens_in"], model["tokens_out"]) == (11, 3)
    assert model["cache_hit"] is False

    ids = {s["id"]: s for s in spans(flow)}
    root = by_kind["flow"][0]["id"]
    assert model["parent"] == prompt["id"]
    assert ids[prompt["parent"]]["kind"] == "assign"
    assert all(s["parent"] == root for s in by_kind["assign"] + by_kind["return"] + by_kind["branch"])
    assert by_kind["flow"][0]["parent"] is None


def test_trace_pins_show_the_version_and_hash_change(tmp_path):
    first = load(tmp_path, TRACED)
    first.run(topic="a")
    get_provider("replay").reset()
    pinned = load(tmp_path, TRACED, pins={"draft": 1})
    pinned.run(topic="a")
    [v2] = spans(first, "model")
    [v1] = spans(pinned, "model")
    assert (v1["prompt"]["version"], v2["prompt"]["version"]) == (1, 2)
    assert v1["prompt"]["hash"] != v2["prompt"]["hash"]


def test_trace_false_writes_nothing(tmp_path):
    flow = load(tmp_path, TRACED, trace=False)
    flow.run(topic="a")
    assert flow.last_run.trace_path is None
    assert not (tmp_path / ".fmflow" / "runs").exists()


def test_a_failed_run_still_writes_its_trace(tmp_path):
    flow = load(tmp_path, '''
        flow f(x: str) -> int {
          n = int(x)
          return n
        }
    ''')
    with pytest.raises(FlowRuntimeError):
        flow.run(x="nope")
    [path] = list((tmp_path / ".fmflow" / "runs").glob("*.jsonl"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[-1]["type"] == "end" and lines[-1]["status"] == "error"
    assert "int()" in lines[-1]["error"]
    assign = next(r for r in lines if r.get("kind") == "assign")
    assert assign["error"] and assign["line"] == 3


SECRET_FLOW = '''
    model m {
      provider: "replay"
      api_key_env: "MY_KEY"
      options: { echo: true }
    }
    prompt p(key: str, note: str) -> str {
      model: m
      template: "key={{ key }} note={{ note }}"
    }
    tool leak(text: str) -> str = python("leaky:leak")
    flow f(key: str) -> str {
      echoed = p(key: key, note: "Bearer " + key)
      parts = { copy: key, inside: "x" + key + "y" }
      return echoed + parts["copy"]
    }
    flow failing(key: str) -> str {
      return leak(key)
    }
'''


def test_an_api_key_never_reaches_the_trace(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", SECRET)
    flow = load(tmp_path, SECRET_FLOW, "f")
    result = flow.run(key=SECRET)
    assert SECRET in result  # the run itself sees it
    text = open(flow.last_run.trace_path, encoding="utf-8").read()
    assert SECRET not in text
    assert "***" in text
    assert len(list((tmp_path / ".fmflow" / "runs").glob("*.jsonl"))) == 1


def test_an_api_key_never_reaches_the_trace_of_a_failed_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", SECRET)
    (tmp_path / "leaky.py").write_text("def leak(text):\n    raise RuntimeError('rejected key ' + text)\n")
    flow = load(tmp_path, SECRET_FLOW, "failing")
    with pytest.raises(FlowRuntimeError):
        flow.run(key=SECRET)
    for path in (tmp_path / ".fmflow").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_usage_counts_answers_tokens_and_cache_hits(tmp_path, scripted):
    import asyncio

    from fmflow.runtime import RunOptions, run_flow
    from fmflow.runtime.usage import Usage

    scripted([{"text": "one", "tokens_in": 7, "tokens_out": 2, "cost": 0.5}])
    flow = cached_flow(tmp_path)
    usage = Usage()
    options = RunOptions(workdir=str(tmp_path), trace=False, on_usage=usage.add_answer)
    for _ in range(2):
        asyncio.run(run_flow(flow.program, None, {"x": "q"}, options))
    assert usage == Usage(calls=2, cached=1, tokens_in=7, tokens_out=2, cost=0.5)  # a cache hit costs nothing


def test_runs_can_share_one_open_cache_and_their_models(tmp_path, scripted):
    import asyncio

    from fmflow.runtime import RunOptions, SharedModels, open_cache, run_flow

    provider = scripted(["first", "second"])
    flow = cached_flow(tmp_path)
    options = RunOptions(workdir=str(tmp_path), trace=False, shared_models=SharedModels())
    options.shared_cache = open_cache(options)
    for _ in range(3):
        assert asyncio.run(run_flow(flow.program, None, {"x": "q"}, options)).value == "first"
    assert len(provider.requests) == 1
    assert options.shared_cache.get("no such key") is None and options.shared_cache.last_error is None  # open
    assert len(options.shared_models.configs) == 1  # evaluated once for the three runs
    options.shared_cache.close()


@pytest.mark.parametrize("name", ["nope", ["hello"], 3])
def test_load_names_a_flow_that_is_not_there(tmp_path, name):
    """The flow is looked up once per name and kept; a name that is not a string still gets
    the message, not a TypeError from the lookup table."""
    path = write(tmp_path, 'flow hello(name: str) -> str {\n  return "hi " + name\n}\n')
    assert fmflow.load(path, "hello", trace=False).run(name="x") == "hi x"
    with pytest.raises(FlowRuntimeError, match=r"no flow .* \(flows: hello\)"):
        fmflow.load(path, name)
