"""`--pin NAME@N` that cannot apply is a usage error; one that a written version overrides is a warning."""

from __future__ import annotations

import warnings

import pytest

import fmflow
from clitools import fmflow_cmd, write

FLOW = '''model m { provider: "replay", options: { echo: true } }

model n { provider: "replay", options: { echo: true } }

prompt answer@1(x: str) -> str {
  model: m
  template: "v1 {{ x }}"
}

prompt answer@2(x: str) -> str {
  model: n
  template: "v2 {{ x }}"
}

flow f(x: str) -> str {
  return answer(x) + " / " + answer@2(x)
}

test pinned {
  flow: f
  input: { x: "a" }
  models: { m: ["from v1"], n: ["from v2", "from v2"] }
  expect: [output == "from v1 / from v2"]
}
'''

COMMANDS = {
    "check": ["check", "flow.fmflow"],
    "run": ["run", "flow.fmflow", "-i", "x=a"],
    "test": ["test", "flow.fmflow"],
    "render": ["render", "flow.fmflow", "--prompt", "answer", "-i", "x=a"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("pin, message", [
    ("anwser@1", "--pin anwser@1: there is no prompt 'anwser'; did you mean 'answer'?"),
    ("answer@3", "--pin answer@3: prompt 'answer' has no version 3 (declared: @1, @2)"),
    ("f@1", "--pin f@1: 'f' is a flow; only prompts have versions"),
])
def test_a_pin_that_cannot_apply_is_a_usage_error(tmp_path, command, pin, message):
    write(tmp_path, "flow.fmflow", FLOW)
    result = fmflow_cmd(tmp_path, *COMMANDS[command], "--pin", pin)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"fmflow: error: {message}" in result.stderr
    assert "E101" not in result.stdout + result.stderr  # not an unknown name in the file


@pytest.mark.parametrize("command", COMMANDS)
def test_a_pin_under_a_written_version_is_a_warning(tmp_path, command):
    write(tmp_path, "flow.fmflow", FLOW)
    result = fmflow_cmd(tmp_path, *COMMANDS[command], "--pin", "answer@1")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert ("fmflow: warning: --pin answer@1 does not apply at flow.fmflow:16:30, which names answer@2 "
            "(a version written in the file wins)") in result.stderr
    assert result.stderr.count("warning") == 1


def test_a_pin_applies_where_no_version_is_written(tmp_path):
    write(tmp_path, "flow.fmflow", FLOW)
    assert fmflow_cmd(tmp_path, "run", "flow.fmflow", "-i", "x=a", "--pin", "answer@1").stdout == "v1 a / v2 a\n"
    assert fmflow_cmd(tmp_path, "test", "flow.fmflow", "--pin", "answer@1").returncode == 0
    assert fmflow_cmd(tmp_path, "test", "flow.fmflow").returncode == 1  # unpinned: answer is @2
    rendered = fmflow_cmd(tmp_path, "render", "flow.fmflow", "--prompt", "answer", "-i", "x=a", "--pin", "answer@1")
    assert "v1 a" in rendered.stdout


def test_pins_are_checked_against_every_file_given(tmp_path):
    write(tmp_path, "flow.fmflow", FLOW)
    write(tmp_path, "other.fmflow", "flow g(x: str) -> str {\n  return x\n}\n")
    both = fmflow_cmd(tmp_path, "check", "flow.fmflow", "other.fmflow", "--pin", "answer@1")
    assert both.returncode == 0, both.stderr  # other.fmflow has no 'answer', flow.fmflow has
    write(tmp_path, "third.fmflow", 'model m { provider: "replay" }\n'
          'prompt answer(x: str) -> str {\n  model: m\n  template: "{{ x }}"\n}\n')
    clash = fmflow_cmd(tmp_path, "check", "flow.fmflow", "third.fmflow", "--pin", "answer@2")
    assert clash.returncode == 2
    assert "--pin answer@2: prompt 'answer' in third.fmflow has no version 2 (declared: @1)" in clash.stderr


def test_the_api_refuses_a_pin_that_cannot_apply_and_warns_about_one_that_changes_nothing(tmp_path):
    path = write(tmp_path, "flow.fmflow", FLOW)
    with pytest.raises(ValueError, match=r"pins\['answer'\] = 3: prompt 'answer' has no version 3"):
        fmflow.load(path, pins={"answer": 3})
    with pytest.raises(ValueError, match=r"pins\['anwser'\] = 1: there is no prompt 'anwser'; did you mean"):
        fmflow.load(path, pins={"anwser": 1})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flow = fmflow.load(path, pins={"answer": 1}, trace=False, cache=False)
    assert [str(w.message) for w in caught] == [
        f"pins['answer'] = 1 does not apply at {path}:16:30, which names answer@2 (a version written in the "
        "file wins)"]
    assert flow.run(x="b") == "v1 b / v2 b"
