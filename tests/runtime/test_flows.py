"""Flows run end to end (LANGUAGE.md §2-§5): every construct, dataflow concurrency.

Models are offline: `provider: "replay"` answers from the flow file, and a
ScriptedProvider registered as "scripted" answers from Python. Concurrency is
shown by the order of events (who started before whom), never by timing.
"""

from __future__ import annotations

import asyncio
import json
import textwrap

import pytest
from pydantic import BaseModel

import fmflow
from fmflow.runtime.errors import FlowRuntimeError
from flowfiles import load

# The checker knows only the real providers; env() lets a flow name the test one.
SCRIPTED = 'env("FMFLOW_TEST_PROVIDER", "scripted")'
WAIT = 3.0  # seconds an event may take before the test fails instead of hanging


def user_text(request) -> str:
    return next(m["content"] for m in reversed(request.messages) if m["role"] == "user")


def line_of(text: str, needle: str) -> int:
    """The 1-based line of `needle` in a flow written by write()."""
    lines = textwrap.dedent(text).splitlines()
    return next(n for n, line in enumerate(lines, 1) if needle in line)


def trace_spans(flow) -> list[dict]:
    with open(flow.last_run.trace_path, encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r.get("type") == "span"]


ECHO_MODEL = 'model m { provider: "replay", options: { echo: true } }\n'


# ------------------------------------------------------------ statements

def test_assignments_and_return(tmp_path):
    flow = load(tmp_path, ECHO_MODEL + '''
        prompt say(x: str) -> str {
          model: m
          template: "said {{ x }}"
        }
        flow f(x: str) -> str {
          a = x + "!"
          b = say(a)
          c = b + " / " + a
          return c
        }
    ''')
    assert flow.run(x="hi") == "said hi! / hi!"


BRANCHES = '''
    model m {{ provider: {provider} }}
    prompt small(n: int) -> str {{
      model: m
      template: "small {{{{ n }}}}"
    }}
    prompt medium(n: int) -> str {{
      model: m
      template: "medium {{{{ n }}}}"
    }}
    prompt large(n: int) -> str {{
      model: m
      template: "large {{{{ n }}}}"
    }}
    flow f(n: int) -> str {{
      if n < 10 {{
        r = small(n)
      }} elif n < 100 {{
        r = medium(n)
      }} else {{
        r = large(n)
      }}
      return r
    }}
'''


@pytest.mark.parametrize("n, taken", [(1, "small"), (50, "medium"), (500, "large")])
def test_if_elif_else_runs_only_the_taken_branch(tmp_path, scripted, n, taken):
    provider = scripted(lambda config, request: "answer to " + user_text(request))
    flow = load(tmp_path, BRANCHES.format(provider=SCRIPTED))
    assert flow.run(n=n) == f"answer to {taken} {n}"
    assert [user_text(r) for r in provider.requests] == [f"{taken} {n}"]


def test_return_in_a_branch_skips_the_statements_after_it(tmp_path, scripted):
    provider = scripted(lambda config, request: "model: " + user_text(request))
    flow = load(tmp_path, f'''
        model m {{ provider: {SCRIPTED} }}
        prompt slow(x: str) -> str {{
          model: m
          template: "slow {{{{ x }}}}"
        }}
        flow f(x: str) -> str {{
          if x == "" {{
            return "empty"
          }}
          answer = slow(x)
          return answer
        }}
    ''')
    assert flow.run(x="") == "empty"
    assert provider.requests == []  # the statement after the returning branch never ran
    assert flow.run(x="q") == "model: slow q"
    assert len(provider.requests) == 1


def test_a_flow_calls_a_flow(tmp_path):
    flow = load(tmp_path, ECHO_MODEL + '''
        prompt say(x: str) -> str {
          model: m
          template: "<{{ x }}>"
        }
        flow inner(x: str, times: int) -> list[str] {
          return [say(x + str(i)) for i in range(times)]
        }
        flow outer(x: str) -> str {
          parts = inner(x, times: 3)
          return join(parts, ",")
        }
    ''', "outer")
    assert flow.run(x="a") == "<a0>,<a1>,<a2>"


# ------------------------------------------------------------ comprehensions

COMPREHENSION = '''
    model m {{ provider: {provider} }}
    prompt label(item: str) -> str {{
      model: m
      template: "{{{{ item }}}}"
    }}
    prompt keep(item: str) -> str {{
      model: m
      template: "keep? {{{{ item }}}}"
    }}
    flow plain(items: list[str]) -> list[str] {{
      return [label(i) for i in items]
    }}
    flow filtered(items: list[str]) -> list[str] {{
      return [label(i) for i in items if len(i) > 1]
    }}
    flow filtered_by_call(items: list[str]) -> list[str] {{
      return [i | upper for i in items if keep(i) == "yes"]
    }}
'''


def reverse_finisher(items: list[str]):
    """A script under which the calls of `items` finish last-first: each waits for the next one."""
    finished: dict[str, asyncio.Event] = {}
    order: list[str] = []

    async def answer(config, request):
        text = user_text(request)
        item = text.removeprefix("keep? ")
        for key in items:
            finished.setdefault(key, asyncio.Event())
        position = items.index(item)
        if position + 1 < len(items):
            await asyncio.wait_for(finished[items[position + 1]].wait(), WAIT)
        order.append(item)
        finished[item].set()
        if text.startswith("keep? "):
            return "yes" if item != "bb" else "no"
        return f"L({item})"

    return answer, order


def test_comprehension_keeps_source_order_when_later_items_finish_first(tmp_path, scripted):
    items = ["a", "bb", "ccc", "dddd"]
    script, order = reverse_finisher(items)
    scripted(script)
    flow = load(tmp_path, COMPREHENSION.format(provider=SCRIPTED), "plain")
    assert flow.run(items=items) == ["L(a)", "L(bb)", "L(ccc)", "L(dddd)"]
    assert order == list(reversed(items))  # really finished in the opposite order


def test_comprehension_with_if_keeps_source_order(tmp_path, scripted):
    items = ["bb", "x", "ccc", "dddd"]  # "x" is filtered out without a call
    script, order = reverse_finisher([i for i in items if len(i) > 1])
    provider = scripted(script)
    flow = load(tmp_path, COMPREHENSION.format(provider=SCRIPTED), "filtered")
    assert flow.run(items=items) == ["L(bb)", "L(ccc)", "L(dddd)"]
    assert sorted(user_text(r) for r in provider.requests) == ["bb", "ccc", "dddd"]
    assert order == ["dddd", "ccc", "bb"]


def test_comprehension_with_a_call_in_its_if(tmp_path, scripted):
    items = ["aa", "bb", "cc"]
    script, order = reverse_finisher(items)
    scripted(script)
    flow = load(tmp_path, COMPREHENSION.format(provider=SCRIPTED), "filtered_by_call")
    assert flow.run(items=items) == ["AA", "CC"]
    assert order == ["cc", "bb", "aa"]


def test_replay_responses_may_mix_strings_and_objects(tmp_path):
    flow = load(tmp_path, '''
        model m {
          provider: "replay"
          options: { responses: [{ text: "one", delay: 0.01 }, "two"] }
        }
        prompt label(item: str) -> str {
          model: m
          template: "{{ item }}"
        }
        flow f(items: list[str]) -> list[str] {
          return [label(i) for i in items]
        }
    ''')
    assert flow.run(items=["a", "b"]) == ["one", "two"]


def test_comprehension_order_with_replay_delays(tmp_path):
    # Replay answers in call order; the first answer is the slowest.
    flow = load(tmp_path, '''
        model m {
          provider: "replay"
          options: { responses: [{ text: "one", delay: 0.3 }, { text: "two", delay: 0.1 }, { text: "three" }] }
        }
        prompt label(item: str) -> str {
          model: m
          template: "{{ item }}"
        }
        flow f(items: list[str]) -> list[str] {
          return [label(i) for i in items]
        }
    ''')
    assert flow.run(items=["a", "b", "c"]) == ["one", "two", "three"]


# ------------------------------------------------------------ expressions

def test_pipes_with_std_filters_and_builtins(tmp_path):
    flow = load(tmp_path, '''
        import "std/filters"
        flow f(text: str) -> list[str] {
          redacted = text | redact_pii
          short = text | redact_pii | truncate(20)
          loud = "  MiXeD Case " | strip | lower
          html = "<p>a &amp; b</p>" | strip_html | upper
          return [redacted, short, loud, html, "x y" | upper]
        }
    ''')
    result = flow.run(text="Mail me at jane.doe@example.com or call +1 555 123 4567 today please")
    assert result[0] == "Mail me at [EMAIL] or call [PHONE] today please"
    assert result[1] == "Mail me at [EMAIL]"
    assert result[2:] == ["mixed case", "A & B", "X Y"]


def test_filter_declared_with_python_beside_the_flow(tmp_path):
    (tmp_path / "text_tools.py").write_text("def shout(text):\n    return text.upper() + '!'\n")
    flow = load(tmp_path, '''
        filter shout(text: str) -> str = python("text_tools:shout")
        flow f(x: str) -> str {
          return x | shout | lower
        }
    ''')
    assert flow.run(x="Hey") == "hey!"


TYPES = '''
    enum Category { billing, bug, other }
    type Answer {
      text: str
      citations: list[str]
      confidence: float
      note: str?
      category: Category
    }
'''


def test_constructors_of_declared_types_and_doc(tmp_path):
    flow = load(tmp_path, TYPES + '''
        flow f(q: str) -> Answer {
          doc = Doc(id: "d1", text: "passage", score: 0.5, metadata: { lang: "en" })
          return Answer(text: q + " " + doc.text, citations: [doc.id], confidence: doc.score,
                        category: Category.bug)
        }
    ''')
    answer = flow.run(q="see")
    assert isinstance(answer, BaseModel)
    assert answer.text == "see passage"
    assert answer.citations == ["d1"]
    assert answer.confidence == 0.5
    assert answer.note is None  # optional field left out
    assert answer.category == "bug"


def test_doc_constructor_result_and_metadata(tmp_path):
    flow = load(tmp_path, '''
        flow f() -> list[Doc] {
          return [Doc(id: "a", text: "t", score: 1.0, metadata: { n: 1 }), Doc(id: "b", text: "u", score: 0.0)]
        }
    ''')
    docs = flow.run()
    assert [d.id for d in docs] == ["a", "b"]
    assert docs[0].metadata == {"n": 1}


def test_enums_equal_their_names(tmp_path):
    flow = load(tmp_path, TYPES + '''
        flow f(c: Category) -> list[bool] {
          return [Category.billing == "billing", c == Category.bug, c != "bug", c in ["bug", "other"],
                  Category.other == Category.other, str(c) == "bug"]
        }
    ''')
    assert flow.run(c="bug") == [True, True, False, True, True, True]


def test_enum_from_a_model_output_and_in_a_result(tmp_path):
    flow = load(tmp_path, TYPES + '''
        model m {
          provider: "replay"
          options: { responses: [{ json: { text: "t", citations: [], confidence: 1, category: "billing" } }] }
        }
        prompt classify(q: str) -> Answer {
          model: m
          template: "{{ q }}"
        }
        flow f(q: str) -> json {
          a = classify(q)
          return { billing: a.category == Category.billing, as_text: a.category, note: a.note }
        }
    ''')
    assert flow.run(q="x") == {"billing": True, "as_text": "billing", "note": None}


def test_optional_fields_given_or_not(tmp_path):
    flow = load(tmp_path, TYPES + '''
        flow f(note: str?) -> Answer {
          return Answer(text: "t", citations: [], confidence: 0.1, note: note, category: Category.other)
        }
    ''')
    assert flow.run(note=None).note is None
    assert flow.run(note="n").note == "n"


def test_dict_list_index_attribute_conditional(tmp_path):
    flow = load(tmp_path, '''
        flow f(xs: list[int], key: str) -> json {
          table = { a: [1], b: [10, 20, 30], c: [] }
          picked = table[key]
          first = xs[0]
          last = xs[len(xs) - 1]
          size = "big" if len(xs) > 2 else "small"
          nested = { deep: "yes" }["deep"]
          arithmetic = [first * 2 + last - 1, last % 2, 7 / 2, -first]
          logic = [first < last and not (first == last), first > last or last >= 3, 2 not in xs]
          return { picked: picked, ends: [first, last], size: size, nested: nested,
                   arithmetic: arithmetic, logic: logic, second: table["b"][1] }
        }
    ''')
    assert flow.run(xs=[1, 2, 3], key="b") == {
        "picked": [10, 20, 30], "ends": [1, 3], "size": "big", "nested": "yes",
        "arithmetic": [4, 1, 3.5, -1], "logic": [True, True, False], "second": 20}
    assert flow.run(xs=[5], key="a")["size"] == "small"


def test_dict_literal_with_mixed_values(tmp_path):
    flow = load(tmp_path, '''
        flow f() -> int {
          table = { a: 1, b: [10, 20], c: { deep: "yes" } }
          return table["a"]
        }
    ''')
    assert flow.run() == 1


def test_every_builtin_function(tmp_path):
    flow = load(tmp_path, '''
        flow f(text: str) -> json {
          words = split(text)
          return {
            len: [len(text), len(words), len({ a: 1 })]
            str: str(12)
            int: int("7")
            float: float("2.5")
            join: join(words, "+")
            split: split("a,b", ",")
            lower: lower(text)
            upper: upper(text)
            strip: strip("  padded  ")
            range: [range(3), range(1, 4)]
            min: [min([4, 2, 9]), min(3, 1)]
            max: [max([4, 2, 9]), max(3, 8)]
            max_str: max("a", "b")
            sum: [sum([1, 2, 3]), sum([0.5, 0.25])]
            keys: keys({ x: 1, y: 2 })
            values: values({ x: 1, y: 2 })
          }
        }
    ''')
    assert flow.run(text="Big Red Fox") == {
        "len": [11, 3, 1], "str": "12", "int": 7, "float": 2.5, "join": "Big+Red+Fox",
        "split": ["a", "b"], "lower": "big red fox", "upper": "BIG RED FOX", "strip": "padded",
        "range": [[0, 1, 2], [1, 2, 3]], "min": [2, 1], "max": [9, 8], "max_str": "b", "sum": [6, 0.75],
        "keys": ["x", "y"], "values": [1, 2]}


def test_a_failing_builtin_names_flow_line_and_cause(tmp_path):
    flow = load(tmp_path, '''
        flow f(x: str) -> int {
          n = int(x)
          return n
        }
    ''')
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(x="seven")
    error = info.value
    assert (error.flow, error.line) == ("f", 3)  # the file starts with an empty line
    assert "int()" in str(error) and "seven" in str(error)


# ------------------------------------------------------------ env() in a model

ENV_MODEL = f'''
    model m {{
      provider: {SCRIPTED}
      name: env("FMFLOW_TEST_MODEL_NAME", "default-model")
      temperature: env("FMFLOW_TEST_TEMPERATURE", 0.5)
    }}
    prompt p(x: str) -> str {{
      model: m
      template: "{{{{ x }}}}"
    }}
    flow f(x: str) -> str {{
      return p(x)
    }}
'''


def test_env_default_in_a_model_block(tmp_path, scripted, monkeypatch):
    monkeypatch.delenv("FMFLOW_TEST_MODEL_NAME", raising=False)
    monkeypatch.delenv("FMFLOW_TEST_TEMPERATURE", raising=False)
    scripted(lambda config, request: f"{config.model} {request.temperature}")
    flow = load(tmp_path, ENV_MODEL)
    assert flow.run(x="q") == "default-model 0.5"


def test_env_value_in_a_model_block_is_read_when_the_flow_runs(tmp_path, scripted, monkeypatch):
    provider = scripted(lambda config, request: str(config.model))
    flow = load(tmp_path, ENV_MODEL)
    monkeypatch.setenv("FMFLOW_TEST_MODEL_NAME", "from-env")
    assert flow.run(x="q") == "from-env"
    monkeypatch.setenv("FMFLOW_TEST_MODEL_NAME", "changed")
    assert flow.run(x="q") == "changed"
    assert len(provider.requests) == 2


# ------------------------------------------------------------ tools

TOOLS_PY = '''
import asyncio

calls = []

def word_count(text):
    calls.append(text)
    return len(text.split())

async def slow_upper(text):
    await asyncio.sleep(0)
    return text.upper()

def explode(text):
    raise ValueError("the tool blew up on " + text)

def wrong(text):
    return "not a number"
'''

TOOLS_FLOW = '''
    tool word_count(text: str) -> int = python("flow_tools:word_count")
    tool slow_upper(text: str) -> str = python("flow_tools:slow_upper")
    tool explode(text: str) -> int = python("flow_tools:explode")
    tool wrong(text: str) -> int = python("flow_tools:wrong")

    flow sync_tool(x: str) -> int {
      return word_count(x)
    }
    flow async_tool(x: str) -> str {
      return slow_upper(text: x)
    }
    flow raising(x: str) -> int {
      y = x + "?"
      n = explode(y)
      return n
    }
    flow wrong_type(x: str) -> int {
      n = wrong(x)
      return n
    }
'''


def tools_flow(tmp_path, name):
    (tmp_path / "flow_tools.py").write_text(TOOLS_PY, encoding="utf-8")
    return load(tmp_path, TOOLS_FLOW, name)


def test_sync_python_tool_beside_the_flow(tmp_path):
    assert tools_flow(tmp_path, "sync_tool").run(x="one two three") == 3


def test_async_python_tool(tmp_path):
    assert tools_flow(tmp_path, "async_tool").run(x="abc") == "ABC"


def test_a_raising_tool_names_the_tool_the_line_and_the_cause(tmp_path):
    flow = tools_flow(tmp_path, "raising")
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(x="boom")
    message = str(info.value)
    assert "explode" in message
    assert "ValueError" in message and "the tool blew up on boom?" in message
    line = line_of(TOOLS_FLOW, "n = explode(y)")
    assert info.value.line == line and info.value.flow == "raising"
    assert f"flow.fmflow:{line}" in message


def test_a_tool_result_of_the_wrong_type_is_rejected(tmp_path):
    flow = tools_flow(tmp_path, "wrong_type")
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(x="a")
    message = str(info.value)
    assert "wrong" in message and "result" in message
    assert info.value.line == line_of(TOOLS_FLOW, "n = wrong(x)")


# ------------------------------------------------------------ typed outputs

ANSWER_FLOW = '''
    type Answer {{
      text: str
      citations: list[str]
      confidence: float
      note: str?
    }}
    model m {{
      provider: "replay"
      options: {{ responses: [{reply}] }}
    }}
    prompt answer(question: str) -> Answer {{
      model: m
      template: "Q: {{{{ question }}}}"
    }}
    flow f(question: str) -> Answer {{
      return answer(question)
    }}
'''

REPLIES = {
    "plain": '{"text": "hi", "citations": ["d1"], "confidence": 0.5}',
    "fenced": 'Here you go:\n```json\n{"text": "hi", "citations": ["d1"], "confidence": 0.5}\n```\n',
    "prose": 'Sure! The answer is {"text": "hi", "citations": ["d1"], "confidence": 0.5} as requested.',
    "trailing commas": '```\n{"text": "hi", "citations": ["d1",], "confidence": 0.5,}\n```',
}


@pytest.mark.parametrize("kind", list(REPLIES))
def test_typed_output_parsed_tolerantly(tmp_path, kind):
    flow = load(tmp_path, ANSWER_FLOW.format(reply=json.dumps(REPLIES[kind])))
    answer = flow.run(question="q")
    assert isinstance(answer, BaseModel)
    assert (answer.text, answer.citations, answer.confidence, answer.note) == ("hi", ["d1"], 0.5, None)


def test_typed_output_request_carries_the_json_schema(tmp_path, scripted):
    provider = scripted(['{"text": "hi", "citations": [], "confidence": 1}'])
    flow = load(tmp_path, ANSWER_FLOW.replace('"replay"', SCRIPTED).format(reply='"unused"'))
    flow.run(question="q")
    request = provider.requests[0]
    assert request.json_schema is not None
    assert set(request.json_schema.get("required", [])) >= {"text", "citations", "confidence"}
    assert "JSON" in user_text(request)


# ------------------------------------------------------------ checks

CHECKED = '''
    type Answer {{
      text: str
      citations: list[str]
      confidence: float
    }}
    model m {{
      provider: "replay"
      options: {{ responses: [{reply}] }}
    }}
    prompt answer(question: str) -> Answer {{
      model: m
      template: "Q: {{{{ question }}}}"
      check: [len(output.citations) > 0, output.confidence <= 1.0, question != output.text]
    }}
    flow f(question: str) -> Answer {{
      a = answer(question)
      return a
    }}
'''


def test_checks_that_pass(tmp_path):
    reply = json.dumps({"json": {"text": "t", "citations": ["d"], "confidence": 0.9}})
    assert load(tmp_path, CHECKED.format(reply=reply)).run(question="q").citations == ["d"]


@pytest.mark.parametrize("answer, failing", [
    ({"text": "t", "citations": [], "confidence": 0.9}, "len(output.citations) > 0"),
    ({"text": "t", "citations": ["d"], "confidence": 1.5}, "output.confidence <= 1.0"),
    ({"text": "q", "citations": ["d"], "confidence": 0.2}, "question != output.text"),
])
def test_a_failing_check_rejects_the_answer(tmp_path, answer, failing):
    flow = load(tmp_path, CHECKED.format(reply=json.dumps({"json": answer})))
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(question="q")
    message = str(info.value)
    assert "rejected" in message and failing in message
    assert info.value.line == line_of(CHECKED, "a = answer(question)")


# ------------------------------------------------------------ prompt versions

VERSIONS = '''
    model m { provider: "replay", options: { echo: true } }
    prompt answer@1(q: str) -> str {
      model: m
      template: "v1 {{ q }}"
    }
    prompt answer@2(q: str) -> str {
      model: m
      template: "v2 {{ q }}"
    }
    flow latest(q: str) -> str {
      return answer(q)
    }
    flow explicit(q: str) -> list[str] {
      return [answer@1(q), answer@2(q), answer(q)]
    }
'''


def test_highest_prompt_version_by_default(tmp_path):
    assert load(tmp_path, VERSIONS, "latest").run(q="x") == "v2 x"


def test_prompt_version_written_in_the_flow(tmp_path):
    assert load(tmp_path, VERSIONS, "explicit").run(q="x") == ["v1 x", "v2 x", "v2 x"]


def test_pins_override_the_version(tmp_path):
    assert load(tmp_path, VERSIONS, "latest", pins={"answer": 1}).run(q="x") == "v1 x"


def test_trace_records_the_prompt_version_called(tmp_path):
    flow = load(tmp_path, VERSIONS, "explicit")
    flow.run(q="x")
    prompts = [s["prompt"] for s in trace_spans(flow) if s["kind"] == "model"]
    assert sorted(p["version"] for p in prompts) == [1, 2, 2]
    assert all(p["name"] == "answer" and p["hash"] for p in prompts)
    assert len({p["hash"] for p in prompts}) == 2


# ------------------------------------------------------------ agents

AGENT_TOOLS = '''
seen = []

def word_count(text):
    seen.append(text)
    return len(text.split())
'''


def test_agent_calls_a_tool_then_answers(tmp_path):
    (tmp_path / "agent_tools.py").write_text(AGENT_TOOLS, encoding="utf-8")
    flow = load(tmp_path, '''
        model m {
          provider: "replay"
          options: { responses: [
            { text: "", tool_calls: [{ name: "word_count", arguments: { text: "one two three" } }] },
            { text: "There are 3 words.", tool_calls: [] }
          ] }
        }
        tool word_count(text: str) -> int = python("agent_tools:word_count")
        agent counter(question: str) -> str {
          model: m
          tools: [word_count]
          max_steps: 3
          template: "Answer: {{ question }}"
        }
        flow f(question: str) -> str {
          return counter(question)
        }
    ''')
    assert flow.run(question="how many words?") == "There are 3 words."
    spans = trace_spans(flow)
    tool_spans = [s for s in spans if s["kind"] == "tool"]
    assert [(s["name"], s["inputs"], s["output"]) for s in tool_spans] == \
        [("word_count", {"text": "one two three"}, 3)]
    assert len([s for s in spans if s["kind"] == "model"]) == 2


def test_agent_sends_the_tool_result_back_to_the_model(tmp_path, scripted):
    (tmp_path / "agent_tools.py").write_text(AGENT_TOOLS, encoding="utf-8")
    provider = scripted([
        {"tool_calls": [{"name": "word_count", "arguments": {"text": "a b"}}]},
        "two",
    ])
    flow = load(tmp_path, f'''
        model m {{ provider: {SCRIPTED} }}
        tool word_count(text: str) -> int = python("agent_tools:word_count")
        agent counter(question: str) -> str {{
          model: m
          tools: [word_count]
          template: "Answer: {{{{ question }}}}"
        }}
        flow f(question: str) -> str {{
          return counter(question)
        }}
    ''')
    assert flow.run(question="q") == "two"
    first, second = provider.requests
    assert [t.name for t in first.tools] == ["word_count"]
    tool_messages = [m for m in second.messages if m["role"] == "tool"]
    assert len(tool_messages) == 1 and tool_messages[0]["content"] == "2"


# ------------------------------------------------------------ concurrency

TWO_CALLS = f'''
    model m {{ provider: {SCRIPTED} }}
    prompt a(x: str) -> str {{
      model: m
      template: "a {{{{ x }}}}"
    }}
    prompt b(x: str) -> str {{
      model: m
      template: "b {{{{ x }}}}"
    }}
    flow statements(x: str) -> str {{
      ra = a(x)
      rb = b(x)
      return ra + "|" + rb
    }}
    flow expression(x: str) -> str {{
      return a(x) + "|" + b(x)
    }}
'''


def both_start_first():
    """on_call that lets no call end before two calls have started; records the events."""
    events: list[str] = []
    both = asyncio.Event()

    async def on_call(config, request):
        events.append("start " + user_text(request))
        if sum(e.startswith("start") for e in events) >= 2:
            both.set()
        await asyncio.wait_for(both.wait(), WAIT)  # a sequential runtime times out here

    def script(config, request):
        events.append("end " + user_text(request))
        return user_text(request).upper()

    return on_call, script, events


@pytest.mark.parametrize("flow_name", ["statements", "expression"])
def test_independent_calls_run_at_the_same_time(tmp_path, scripted, flow_name):
    on_call, script, events = both_start_first()
    provider = scripted(script, on_call=on_call)
    flow = load(tmp_path, TWO_CALLS, flow_name)
    assert flow.run(x="q") == "A Q|B Q"
    assert sorted(events[:2]) == ["start a q", "start b q"]
    assert sorted(events[2:]) == ["end a q", "end b q"]
    assert provider.max_in_flight == 2


BOUNDED = f'''
    model m {{
      provider: {SCRIPTED}
      concurrency: 2
    }}
    prompt label(item: str) -> str {{
      model: m
      template: "{{{{ item }}}}"
    }}
    flow f(items: list[str]) -> list[str] {{
      return [label(i) for i in items]
    }}
'''


async def _linger(config, request):
    # Hold the call open for a few turns of the loop so others can pile up (no wall clock).
    for _ in range(20):
        await asyncio.sleep(0)


def test_comprehension_is_bounded_by_the_model_concurrency(tmp_path, scripted):
    provider = scripted(lambda config, request: "<" + user_text(request) + ">", on_call=_linger)
    flow = load(tmp_path, BOUNDED)
    items = [str(i) for i in range(7)]
    assert flow.run(items=items) == [f"<{i}>" for i in items]
    assert len(provider.requests) == 7
    assert provider.max_in_flight == 2


def test_concurrency_is_shared_by_two_runs_in_one_loop(tmp_path, scripted):
    provider = scripted(lambda config, request: "<" + user_text(request) + ">", on_call=_linger)
    flow = load(tmp_path, BOUNDED)

    async def both():
        return await asyncio.gather(flow.arun(items=["a", "b", "c"]), flow.arun(items=["d", "e", "f"]))

    first, second = asyncio.run(both())
    assert first == ["<a>", "<b>", "<c>"] and second == ["<d>", "<e>", "<f>"]
    assert len(provider.requests) == 6
    assert provider.max_in_flight == 2  # not 2 per run


def test_unbounded_comprehension_starts_every_item_before_any_ends(tmp_path, scripted):
    started = asyncio.Event()
    count = 0

    async def on_call(config, request):
        nonlocal count
        count += 1
        if count == 5:
            started.set()
        await asyncio.wait_for(started.wait(), WAIT)

    provider = scripted(lambda config, request: user_text(request), on_call=on_call)
    flow = load(tmp_path, BOUNDED.replace("concurrency: 2", ""))
    assert flow.run(items=list("abcde")) == list("abcde")
    assert provider.max_in_flight == 5


def test_dependent_calls_wait_for_their_inputs(tmp_path, scripted):
    events: list[str] = []

    async def on_call(config, request):
        events.append("start " + user_text(request))

    def script(config, request):
        events.append("end " + user_text(request))
        return user_text(request).upper()

    scripted(script, on_call=on_call)
    flow = load(tmp_path, f'''
        model m {{ provider: {SCRIPTED} }}
        prompt p(x: str) -> str {{
          model: m
          template: "{{{{ x }}}}"
        }}
        flow f(x: str) -> str {{
          first = p(x)
          second = p(first + "2")
          return second
        }}
    ''')
    assert flow.run(x="q") == "Q2"
    assert events == ["start q", "end q", "start Q2", "end Q2"]


def test_a_statement_after_an_if_without_return_runs_alongside_the_branch(tmp_path, scripted):
    on_call, script, events = both_start_first()
    scripted(script, on_call=on_call)
    flow = load(tmp_path, f'''
        model m {{ provider: {SCRIPTED} }}
        prompt p(x: str) -> str {{
          model: m
          template: "{{{{ x }}}}"
        }}
        flow f(flag: bool) -> str {{
          if flag {{
            a = p("one")
          }} else {{
            a = "none"
          }}
          b = p("two")
          return a + b
        }}
    ''')
    assert flow.run(flag=True) == "ONETWO"
    assert sorted(events[:2]) == ["start one", "start two"]


def test_a_statement_after_an_if_that_may_return_waits_for_it(tmp_path, scripted):
    events: list[str] = []

    async def on_call(config, request):
        events.append("start " + user_text(request))

    def script(config, request):
        events.append("end " + user_text(request))
        return user_text(request).upper()

    provider = scripted(script, on_call=on_call)
    flow = load(tmp_path, f'''
        model m {{ provider: {SCRIPTED} }}
        prompt p(x: str) -> str {{
          model: m
          template: "{{{{ x }}}}"
        }}
        flow f(x: str) -> str {{
          if p(x) == "STOP" {{
            return "stopped"
          }}
          after = p("after")
          return after
        }}
    ''')
    assert flow.run(x="stop") == "stopped"
    assert events == ["start stop", "end stop"]
    events.clear()
    assert flow.run(x="go") == "AFTER"
    assert events == ["start go", "end go", "start after", "end after"]
    assert len(provider.requests) == 3


def test_concurrency_is_shared_by_two_loads_of_the_same_file(tmp_path, scripted):
    provider = scripted(lambda config, request: user_text(request), on_call=_linger)
    first, second = load(tmp_path, BOUNDED), load(tmp_path, BOUNDED)

    async def both():
        return await asyncio.gather(first.arun(items=["a", "b"]), second.arun(items=["c", "d"]))

    assert asyncio.run(both()) == [["a", "b"], ["c", "d"]]
    assert provider.max_in_flight == 2


def test_templates_render_docs_enums_and_lists(tmp_path, scripted):
    provider = scripted(["ok"])
    flow = load(tmp_path, TYPES + f'''
        model m {{ provider: {SCRIPTED} }}
        prompt p(docs: list[Doc], c: Category, tags: list[str], flag: bool, note: str?) -> str {{
          model: m
          system: "You are terse."
          template: """
            {{% for d in docs %}}[{{{{ d.id }}}}] {{{{ d.text }}}}
            {{% endfor %}}category={{{{ c }}}} tags={{{{ tags }}}} flag={{{{ flag }}}} note={{{{ note }}}}
          """
        }}
        flow f(c: Category) -> str {{
          docs = [Doc(id: "d1", text: "first", score: 0.9), Doc(id: "d2", text: "second", score: 0.1)]
          return p(docs, c, ["a", "b"], true, null)
        }}
    ''')
    assert flow.run(c="billing") == "ok"
    [request] = provider.requests
    assert request.messages[0] == {"role": "system", "content": "You are terse."}
    assert user_text(request) == ('[d1] first\n[d2] second\ncategory=billing tags=["a", "b"] flag=true '
                                  'note=null')


AGENT_FAILING_TOOLS = '''
def lookup(key):
    raise LookupError("no entry for " + key)
'''


def test_an_agent_tool_failure_is_told_to_the_model(tmp_path, scripted):
    (tmp_path / "agent_tools.py").write_text(AGENT_FAILING_TOOLS, encoding="utf-8")
    provider = scripted([
        {"tool_calls": [{"name": "lookup", "arguments": {"key": "k1"}},
                        {"name": "missing_tool", "arguments": {}}]},
        "I could not find it.",
    ])
    flow = load(tmp_path, f'''
        model m {{ provider: {SCRIPTED} }}
        tool lookup(key: str) -> str = python("agent_tools:lookup")
        agent finder(question: str) -> str {{
          model: m
          tools: [lookup]
          template: "{{{{ question }}}}"
        }}
        flow f(question: str) -> str {{
          return finder(question)
        }}
    ''')
    assert flow.run(question="q") == "I could not find it."
    tool_messages = [m for m in provider.requests[1].messages if m["role"] == "tool"]
    assert [m["name"] for m in tool_messages] == ["lookup", "missing_tool"]
    assert "no entry for k1" in tool_messages[0]["content"]
    assert tool_messages[0]["content"].startswith("error")
    assert "missing_tool" in tool_messages[1]["content"] and "lookup" in tool_messages[1]["content"]


def test_an_agent_that_never_answers_stops_at_max_steps(tmp_path, scripted):
    (tmp_path / "agent_tools.py").write_text(AGENT_TOOLS, encoding="utf-8")
    provider = scripted([{"tool_calls": [{"name": "word_count", "arguments": {"text": "a"}}]}], cycle=True)
    flow = load(tmp_path, f'''
        model m {{ provider: {SCRIPTED} }}
        tool word_count(text: str) -> int = python("agent_tools:word_count")
        agent looper(question: str) -> str {{
          model: m
          tools: [word_count]
          max_steps: 3
          template: "{{{{ question }}}}"
        }}
        flow f(question: str) -> str {{
          return looper(question)
        }}
    ''')
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(question="q")
    assert "max_steps" in str(info.value) and "looper" in str(info.value)
    assert len(provider.requests) == 3


def test_agent_with_a_typed_output(tmp_path, scripted):
    scripted(['Done: ```json\n{"text": "t", "citations": ["x"], "confidence": 0.2, "category": "other"}\n```'])
    flow = load(tmp_path, TYPES + f'''
        model m {{ provider: {SCRIPTED} }}
        agent helper(question: str) -> Answer {{
          model: m
          template: "{{{{ question }}}}"
        }}
        flow f(question: str) -> Answer {{
          return helper(question)
        }}
    ''')
    answer = flow.run(question="q")
    assert isinstance(answer, BaseModel) and answer.category == "other"


def test_mocks_of_a_flow_and_a_tool(tmp_path):
    (tmp_path / "flow_tools.py").write_text(TOOLS_PY, encoding="utf-8")
    flow = load(tmp_path, '''
        tool word_count(text: str) -> int = python("flow_tools:word_count")
        flow inner(x: str) -> str {
          return x + x
        }
        flow outer(x: str) -> str {
          return inner(x) + str(word_count(x))
        }
    ''', "outer", mocks={"inner": "mocked", "word_count": 99})
    assert flow.run(x="a b") == "mocked99"


def test_a_wrong_typed_return_value_is_located(tmp_path):
    text = '''
        flow f(x: json) -> int {
          y = x
          return y
        }
    '''
    flow = load(tmp_path, text)
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(x="not a number")
    assert info.value.flow == "f"
    assert info.value.line == line_of(text, "return y")


TWO_RETURNING_IFS = f'''
    model m {{ provider: {SCRIPTED} }}
    prompt p(x: str) -> str {{
      model: m
      template: "{{{{ x }}}}"
    }}
    flow f(x: int) -> str {{
      if x > 0 {{
        return "positive"
      }}
      if x < 0 {{
        return "negative"
      }}
      z = p("zero")
      return z
    }}
'''


def test_an_early_return_skips_everything_after_two_returning_ifs(tmp_path, scripted):
    provider = scripted(lambda config, request: user_text(request).upper())
    flow = load(tmp_path, TWO_RETURNING_IFS)
    assert flow.run(x=-1) == "negative"
    assert flow.run(x=0) == "ZERO"
    provider.requests.clear()
    assert flow.run(x=1) == "positive"
    assert provider.requests == []


def test_an_early_return_in_the_second_of_two_ifs(tmp_path, scripted):
    provider = scripted(lambda config, request: user_text(request).upper())
    flow = load(tmp_path, TWO_RETURNING_IFS)
    assert flow.run(x=-5) == "negative"
    assert provider.requests == []


def test_reloading_flows_in_one_process_keeps_early_returns(tmp_path, scripted):
    import gc

    count = 30
    provider = scripted(lambda config, request: "AFTER")
    head = f'''
model m {{ provider: {SCRIPTED} }}
prompt p(x: str) -> str {{
  model: m
  template: "{{{{ x }}}}"
}}
'''
    branches = "".join(f'  if flag {{\n    a{i} = "x"\n  }} else {{\n    a{i} = "y"\n  }}\n' for i in range(count))
    plain = head + "flow f(flag: bool) -> str {\n" + branches + "  return " + \
        " + ".join(f"a{i}" for i in range(count)) + "\n}\n"
    returning = head + "".join(f'''
flow r{i}(flag: bool) -> str {{
  if flag {{
    return "early"
  }}
  after = p("after")
  return after
}}
''' for i in range(count)) + "flow main(flag: bool) -> list[str] {\n  return [" + \
        ", ".join(f"r{i}(flag)" for i in range(count)) + "]\n}\n"
    (tmp_path / "plain.fmflow").write_text(plain, encoding="utf-8")
    (tmp_path / "returning.fmflow").write_text(returning, encoding="utf-8")

    async def run(flow, **inputs):
        return await asyncio.wait_for(flow.arun(**inputs), WAIT)

    for _ in range(30):
        first = fmflow.load(tmp_path / "plain.fmflow", workdir=tmp_path, trace=False, cache=False)
        assert asyncio.run(run(first, flag=True)) == "x" * count
        del first
        gc.collect()
        second = fmflow.load(tmp_path / "returning.fmflow", "main", workdir=tmp_path, trace=False, cache=False)
        assert asyncio.run(run(second, flag=True)) == ["early"] * count
        assert provider.requests == []
        del second
        gc.collect()


def test_imported_file_declarations_and_its_own_tools(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "shared.fmflow").write_text(textwrap.dedent('''
        model m { provider: "replay", options: { echo: true } }
        tool count(text: str) -> int = python("lib_tools:count")
        prompt say(x: str) -> str {
          model: m
          template: "said {{ x }}"
        }
        flow helper(x: str) -> str {
          return say(x) + str(count(x))
        }
    '''), encoding="utf-8")
    (lib / "lib_tools.py").write_text("def count(text):\n    return len(text)\n", encoding="utf-8")
    flow = load(tmp_path, '''
        import "./lib/shared.fmflow"
        flow f(x: str) -> str {
          return helper(x) + " / " + say(x) + " / " + str(count(x))
        }
    ''')
    assert flow.run(x="abc") == "said abc3 / said abc / 3"


def test_conditional_expression_and_boolean_operators_evaluate_only_what_they_need(tmp_path, scripted):
    provider = scripted(lambda config, request: "yes")
    flow = load(tmp_path, f'''
        model m {{ provider: {SCRIPTED} }}
        prompt ask(x: str) -> str {{
          model: m
          template: "{{{{ x }}}}"
        }}
        flow f(flag: bool) -> list[json] {{
          picked = ask("then") if flag else ask("else")
          both = flag and ask("and") == "yes"
          either = flag or ask("or") == "yes"
          return [picked, both, either]
        }}
    ''')
    assert flow.run(flag=True) == ["yes", True, True]
    assert sorted(user_text(r) for r in provider.requests) == ["and", "then"]
    provider.requests.clear()
    assert flow.run(flag=False) == ["yes", False, True]
    assert sorted(user_text(r) for r in provider.requests) == ["else", "or"]
