"""Parameter defaults (LANGUAGE.md §2) at run time: callers may leave them out; each is
evaluated when the call is made, in order, and may read the parameters before it.
Through the Python API, `fmflow run -i`/`--input-json`, `fmflow test`, agents' tool
calls and `fmflow serve`; and what schemas show of them (tool specs, served inputs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fmflow.runtime.errors import FlowRuntimeError

from flowfiles import load, write

ROOT = Path(__file__).resolve().parents[2]
SCRIPTED = 'env("FMFLOW_TEST_PROVIDER", "scripted")'

TOOLS = '''
import asyncio

calls = []

def count(text, min_length=99):
    calls.append(("count", text, min_length))
    return len([w for w in text.split() if len(w) >= min_length])

async def clip(text, limit, marker):
    await asyncio.sleep(0)
    return text[:limit] + marker if len(text) > limit else text
'''

FLOWS = '''
    enum Tone { plain, formal }

    tool count(text: str, min_length: int = 1) -> int = python("default_tools:count")
    filter clip(text: str, limit: int = 5, marker: str = "…") -> str = python("default_tools:clip")

    flow refine(draft: str, round: int = 0, tone: Tone = Tone.plain, width: int = len(draft) * 2,
                note: str? = null) -> str {
      return draft + "|" + str(round) + "|" + tone + "|" + str(width) + "|" + str(note)
    }

    flow caller(text: str) -> str {
      a = refine(text)
      b = refine(text, 3)
      c = refine(text, tone: Tone.formal, note: "n")
      d = refine(draft: text, width: 1)
      return join([a, b, c, d], "\\n")
    }

    flow counting(text: str) -> str {
      return str(count(text)) + " " + str(count(text, 4)) + " " + (text | clip) + " " + (text | clip(2, "."))
    }
'''


def _load(tmp_path, flow=None):
    (tmp_path / "default_tools.py").write_text(TOOLS, encoding="utf-8")
    return load(tmp_path, FLOWS, flow, trace=False, cache=False)


def test_the_api_may_leave_defaulted_inputs_out(tmp_path):
    flow = _load(tmp_path, "refine")
    assert flow.run(draft="abc") == "abc|0|plain|6|null"
    assert flow.run(draft="abc", round=2, tone="formal", width=1, note="x") == "abc|2|formal|1|x"
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(round=2)
    assert str(info.value) == "flow 'refine' needs input 'draft'"


def test_calls_leave_defaults_out_positionally_or_by_name(tmp_path):
    assert _load(tmp_path, "caller").run(text="xy").split("\n") == [
        "xy|0|plain|4|null", "xy|3|plain|4|null", "xy|0|formal|4|n", "xy|0|plain|1|null"]


def test_tools_and_filters_get_their_defaults(tmp_path):
    assert _load(tmp_path, "counting").run(text="a bb cccc dddddd") == "4 2 a bb … a ."


def test_a_default_is_evaluated_at_each_call(tmp_path, scripted):
    provider = scripted(lambda config, request: request.messages[-1]["content"])
    flow = load(tmp_path, '''
        model m { provider: SCRIPTED }
        tool stamp(prefix: str) -> str = python("stamp_tools:stamp")
        prompt echo(text: str, tag: str = stamp(text)) -> str {
          model: m
          template: "{{ tag }}: {{ text }}"
        }
        flow f(a: str, b: str) -> str {
          return echo(a) + " / " + echo(b) + " / " + echo(b, "given")
        }
    '''.replace("SCRIPTED", SCRIPTED), trace=False, cache=False)
    (tmp_path / "stamp_tools.py").write_text(
        "n = [0]\ndef stamp(prefix):\n    n[0] += 1\n    return f'{prefix}{n[0]}'\n", encoding="utf-8")
    first, second, third = flow.run(a="x", b="y").split(" / ")  # the two calls run concurrently
    assert {first, second} in ({"x1: x", "y2: y"}, {"x2: x", "y1: y"})  # one evaluation per call
    assert third == "given: y"  # given: the default is not evaluated
    assert len(provider.requests) == 3


def test_a_default_that_does_not_fit_at_run_time_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FMFLOW_TEST_ROUNDS", "many")
    flow = load(tmp_path, '''
        flow f(x: str, rounds: int = env("FMFLOW_TEST_ROUNDS", "3") | len) -> int {
          return rounds
        }
        flow g(x: str, label: str = env("FMFLOW_TEST_ROUNDS")) -> str {
          return label
        }
    ''', "g", trace=False, cache=False)
    assert flow.run(x="a") == "many"
    monkeypatch.delenv("FMFLOW_TEST_ROUNDS")
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(x="a")
    assert "FMFLOW_TEST_ROUNDS is not set" in str(info.value)


def test_test_blocks_may_leave_defaulted_inputs_out(tmp_path):
    (tmp_path / "default_tools.py").write_text(TOOLS, encoding="utf-8")
    path = write(tmp_path, FLOWS + '''
    test refine_defaults {
      flow: refine
      input: { draft: "ab" }
      expect: [output == "ab|0|plain|4|null"]
    }
    ''')
    result = _fmflow(tmp_path, "test", path.name)
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------- the command line

def _fmflow(cwd, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "fmflow", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_fmflow_run_leaves_defaulted_inputs_out(tmp_path):
    (tmp_path / "default_tools.py").write_text(TOOLS, encoding="utf-8")
    write(tmp_path, FLOWS)
    result = _fmflow(tmp_path, "run", "flow.fmflow", "--flow", "refine", "-i", "draft=hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello|0|plain|10|null"
    result = _fmflow(tmp_path, "run", "flow.fmflow", "--flow", "refine", "--input-json",
                     '{"draft": "hi", "tone": "formal"}', "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "hi|0|formal|4|null"
    missing = _fmflow(tmp_path, "run", "flow.fmflow", "--flow", "refine", "-i", "round=1")
    assert missing.returncode == 2
    assert "flow 'refine' needs input 'draft'" in missing.stderr and "Traceback" not in missing.stderr


# ------------------------------------------------------------------ schemas

def test_tool_specs_describe_tools_with_their_docs_and_defaults(tmp_path, scripted):
    (tmp_path / "spec_tools.py").write_text(
        "def lookup(email, limit, tone, since):\n"
        "    return {'email': email, 'limit': limit, 'tone': tone, 'since': since}\n"
        "def bare(x):\n    return x\n",
        encoding="utf-8")
    provider = scripted([{"tool_calls": [{"name": "lookup", "arguments": {"email": "a@b.c"}}]}, "done"])
    flow = load(tmp_path, '''
        model m { provider: SCRIPTED }
        enum Tone { plain, formal }
        ## Looks a customer up by email.
        tool lookup(
          ## The customer's email address.
          email: str,
          ## How many past tickets to return.
          limit: int = 5,
          tone: Tone = Tone.plain,
          since: str = email + "-start",
        ) -> json = python("spec_tools:lookup")
        tool bare(x: int) -> int = python("spec_tools:bare")
        agent desk(q: str) -> str {
          model: m
          tools: [lookup, bare]
          template: "{{ q }}"
        }
        flow f(q: str) -> str {
          return desk(q)
        }
    '''.replace("SCRIPTED", SCRIPTED), trace=False, cache=False)
    assert flow.run(q="who?") == "done"
    lookup, bare = provider.requests[0].tools
    assert lookup.description == "Looks a customer up by email."
    assert lookup.parameters == {
        "type": "object",
        "properties": {
            "email": {"type": "string", "description": "The customer's email address."},
            "limit": {"type": "integer", "description": "How many past tickets to return.", "default": 5},
            "tone": {"enum": ["plain", "formal"], "type": "string", "default": "plain"},
            "since": {"type": "string"},  # not a constant: optional, no value shown
        },
        "required": ["email"],
        "additionalProperties": False,
    }
    assert bare.description == "tool bare"
    # The model left the defaulted arguments out: the runtime filled them in.
    tool_message = next(m for m in provider.requests[1].messages if m["role"] == "tool")
    assert json.loads(tool_message["content"]) == {"email": "a@b.c", "limit": 5, "tone": "plain",
                                                   "since": "a@b.c-start"}


def test_a_tool_call_missing_a_required_argument_tells_the_model(tmp_path, scripted):
    (tmp_path / "spec_tools.py").write_text("def double(x):\n    return 2 * x\n", encoding="utf-8")
    provider = scripted([{"tool_calls": [{"name": "double", "arguments": {}}]}, "gave up"])
    flow = load(tmp_path, '''
        model m { provider: SCRIPTED }
        tool double(x: int) -> int = python("spec_tools:double")
        agent a(q: str) -> str {
          model: m
          tools: [double]
          template: "{{ q }}"
        }
        flow f(q: str) -> str {
          return a(q)
        }
    '''.replace("SCRIPTED", SCRIPTED), trace=False, cache=False)
    assert flow.run(q="q") == "gave up"
    tool_message = next(m for m in provider.requests[1].messages if m["role"] == "tool")
    assert tool_message["content"] == "error: missing argument 'x' for tool 'double'"


def test_served_inputs_with_defaults_are_optional(tmp_path):
    pytest.importorskip("fastapi")
    from fmflow.api import load_checked
    from fmflow.serve.catalog import InvalidInputs, ServedFlow

    (tmp_path / "default_tools.py").write_text(TOOLS, encoding="utf-8")
    path = write(tmp_path, FLOWS.replace("    flow refine(", "    ## Rewrites a draft.\n    flow refine(")
                 .replace("draft: str, round", "\n      ## The text to rewrite.\n      draft: str, round"))
    program = load_checked(path)
    served = ServedFlow(program, program.flow("refine"))
    schema = served.input_schema()
    assert schema["required"] == ["draft"]
    assert schema["description"] == "Rewrites a draft."
    assert schema["properties"]["draft"]["description"] == "The text to rewrite."
    assert schema["properties"]["round"]["default"] == 0
    assert schema["properties"]["tone"]["default"] == "plain"
    assert "default" not in schema["properties"]["width"]  # computed from `draft` when the flow runs
    assert served.parse_inputs(b'{"draft": "abc"}') == {"draft": "abc"}
    with pytest.raises(InvalidInputs) as info:
        served.parse_inputs(b'{"round": 1}')
    assert [p.message for p in info.value.problems] == ["draft: missing input"]
