"""`fmflow run` and friends fed hostile or careless input, as a user would type it.

Inputs: strict typing, repeated keys, lone surrogates, binary files, JSON
nested 100,000 deep. Outputs: stdout under --json is always JSON, a reader
that leaves the pipe does not change the exit status, a damaged trace file
is shown as far as it can be read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import fmflow as fmflow_api
from fmflow.runtime.errors import FlowRuntimeError
from test_run import ROOT, fmflow, no_traceback, traces, write

TYPED = '''
    type Point {
      x: int
      label: str?
    }
    enum Color { red, green }
    flow f(s: str, n: int, ratio: float, p: Point, tags: list[int], maybe: int?, c: Color) -> str {
      return s + " " + str(n) + " " + str(ratio) + " " + str(p.x) + " " + str(len(tags)) + " " + c
    }
'''
GOOD = {"s": "hi", "n": "1", "ratio": "2", "p": '{"x": 3}', "tags": "[1, 2]", "maybe": "null", "c": "green"}


def run_typed(tmp_path, *args, **values):
    """`fmflow run` of TYPED with GOOD inputs, except those given in ``values`` (None: left out)."""
    path = write(tmp_path, TYPED)
    inputs = {**GOOD, **values}
    pairs = [part for key, value in inputs.items() if value is not None for part in ("-i", f"{key}={value}")]
    return fmflow(tmp_path, "run", path, *pairs, *args)


def assert_usage_error(result, *words) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    for word in words:
        assert word in result.stderr
    no_traceback(result)


# ------------------------------------------------------------ strict typing of inputs

def test_good_inputs_run(tmp_path):
    result = run_typed(tmp_path)
    assert (result.returncode, result.stdout) == (0, "hi 1 2.0 3 2 green\n"), result.stderr


@pytest.mark.parametrize("values, words", [
    ({"n": "true"}, "input 'n': expected an integer, got a boolean (true)"),
    ({"n": '"1"'}, "input 'n': expected an integer, got a string (\"1\")"),
    ({"n": "1.5"}, "input 'n': expected an integer, got a number (1.5)"),
    ({"ratio": "false"}, "input 'ratio': expected a number, got a boolean (false)"),
    ({"ratio": "NaN"}, "input 'ratio': expected a number"),
    ({"p": '{"x": "1"}'}, "input 'p.x': expected an integer, got a string (\"1\")"),
    ({"p": '{"x": 1, "y": 2}'}, "input 'p': Point has no field 'y' (fields: x, label)"),
    ({"p": "{}"}, "input 'p': Point needs field 'x'"),
    ({"p": '{"x": 1, "label": 7}'}, "input 'p.label': expected a string, got a number (7)"),
    ({"tags": '[1, "2"]'}, "input 'tags[1]': expected an integer, got a string (\"2\")"),
    ({"tags": '{"a": 1}'}, "input 'tags': expected a list (list[int]), got an object"),
    ({"maybe": "true"}, "input 'maybe': expected an integer, got a boolean"),
    ({"c": "Green"}, "input 'c': expected one of red, green (Color), got a string (\"Green\")"),
])
def test_inputs_are_typed_strictly(tmp_path, values, words):
    assert_usage_error(run_typed(tmp_path, **values), words)
    assert not (tmp_path / ".fmflow" / "runs").exists()  # refused before the run started


@pytest.mark.parametrize("values", [{"ratio": "2"}, {"maybe": "4"}, {"p": '{"x": 1, "label": null}'},
                                    {"p": '{"x": 1, "label": "a"}'}, {"tags": "[]"}, {"c": "red"}])
def test_what_strict_typing_still_accepts(tmp_path, values):
    result = run_typed(tmp_path, **values)
    assert result.returncode == 0, result.stderr


def test_an_input_given_twice_is_an_error(tmp_path):
    assert_usage_error(run_typed(tmp_path, "-i", "s=other"), "input 's' is given twice with -i")


def test_input_json_is_typed_strictly_and_refuses_repeated_keys(tmp_path):
    path = write(tmp_path, TYPED)
    good = {"s": "hi", "n": 1, "ratio": 2, "p": {"x": 3}, "tags": [1], "maybe": None, "c": "red"}
    assert fmflow(tmp_path, "run", path, "--input-json", json.dumps(good)).returncode == 0
    for bad, words in (({**good, "n": True}, "input 'n': expected an integer, got a boolean"),
                       ({**good, "p": {"x": 3, "z": 0}}, "Point has no field 'z'")):
        assert_usage_error(fmflow(tmp_path, "run", path, "--input-json", json.dumps(bad)), words)
    repeated = json.dumps(good)[:-1] + ', "n": 2}'
    assert_usage_error(fmflow(tmp_path, "run", path, "--input-json", repeated), 'the key "n" appears twice')
    nan = json.dumps(good).replace('"ratio": 2', '"ratio": NaN')
    assert_usage_error(fmflow(tmp_path, "run", path, "--input-json", nan), "NaN is not a JSON number")


def test_the_python_api_types_inputs_strictly(tmp_path):
    flow = fmflow_api.load(write(tmp_path, TYPED), workdir=tmp_path, cache=False, trace=False)
    good = {"s": "hi", "n": 1, "ratio": 2, "p": {"x": 3}, "tags": [1], "maybe": None, "c": "red"}
    assert flow.run(**good) == "hi 1 2.0 3 1 red"
    for bad, words in (({"n": True}, "input 'n': expected an integer, got a boolean (true)"),
                       ({"n": "1"}, "input 'n': expected an integer, got a string"),
                       ({"p": {"x": "1"}}, "input 'p.x': expected an integer"),
                       ({"p": {"x": 1, "extra": 2}}, "Point has no field 'extra'"),
                       ({"s": "\ud800"}, "input 's' holds a lone surrogate")):
        with pytest.raises(FlowRuntimeError) as exc:
            flow.run(**{**good, **bad})
        assert words in str(exc.value)


# ------------------------------------------------------------ text that is not text

def test_a_lone_surrogate_escape_in_input_json_is_a_usage_error(tmp_path):
    path = write(tmp_path, TYPED)
    text = '{"s": "\\ud800", "n": 1, "ratio": 2, "p": {"x": 3}, "tags": [], "maybe": null, "c": "red"}'
    assert_usage_error(fmflow(tmp_path, "run", path, "--input-json", text),
                       "input 's' holds a lone surrogate (\\ud800) at character 0")


def test_a_lone_surrogate_inside_a_structured_input_is_a_usage_error(tmp_path):
    result = run_typed(tmp_path, p='{"x": 1, "label": "a\\udfff"}')
    assert_usage_error(result, "input 'p' holds a lone surrogate")


def test_invalid_utf8_in_an_argument_is_a_usage_error(tmp_path):
    path = write(tmp_path, TYPED)
    args = [b"run", str(path).encode(), *(part for k, v in GOOD.items() if k != "s"
                                          for part in (b"-i", f"{k}={v}".encode())), b"-i", b"s=caf\xe9"]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    result = subprocess.run([sys.executable.encode(), b"-m", b"fmflow", *args], cwd=tmp_path, env=environment,
                            capture_output=True, timeout=60)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr
    assert "input 's' holds a lone surrogate (\\udce9) at character 3" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("option", ["--input-json", "-i"])
def test_a_binary_input_file_is_a_usage_error(tmp_path, option):
    (tmp_path / "blob.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    if option == "-i":
        result = run_typed(tmp_path, s="@blob.bin")
        words = "-i s: 'blob.bin' is not UTF-8 text (byte 0x89 at offset 0)"
    else:
        result = fmflow(tmp_path, "run", write(tmp_path, TYPED), "--input-json", "@blob.bin")
        words = "--input-json: 'blob.bin' is not UTF-8 text (byte 0x89 at offset 0)"
    assert_usage_error(result, words)


def test_json_nested_100k_deep_is_a_usage_error(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "deep.json").write_text('{"tags": ' + deep + "}", encoding="utf-8")
    path = write(tmp_path, TYPED)
    assert_usage_error(fmflow(tmp_path, "run", path, "--input-json", "@deep.json"), "--input-json: the JSON is "
                       "nested too deeply")
    assert_usage_error(run_typed(tmp_path, tags="[" * 60_000 + "]" * 60_000), "-i tags: not valid JSON (the JSON "
                       "is nested too deeply")


def test_json_nested_past_the_input_depth_limit_is_a_usage_error(tmp_path):
    assert_usage_error(run_typed(tmp_path, tags="[" * 150 + "]" * 150), "input 'tags' is nested deeper than 100")


# ------------------------------------------------------------ stdout under --json

def nan_flow(tmp_path, reply: str, returns: str = "float"):
    """A flow whose result comes from a Python tool returning ``reply`` evaluated (NaN, infinities)."""
    (tmp_path / "nan_tools.py").write_text(f"def score(x):\n    return {reply}\n", encoding="utf-8")
    return write(tmp_path, f'''
        type Score {{
          score: float
          parts: list[float]
        }}
        tool score(x: str) -> {returns} = python("nan_tools:score")
        flow f(x: str) -> {returns} {{
          return score(x)
        }}
    ''')


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_a_non_finite_result_leaves_stdout_empty_under_json(tmp_path):
    result = fmflow(tmp_path, "run", nan_flow(tmp_path, "float('nan')"), "-i", "x=a", "--json")
    assert (result.returncode, result.stdout) == (1, "")  # the run refuses NaN; stdout stays JSON-clean
    assert "NaN" in result.stderr


def test_json_text_writes_non_finite_numbers_as_null_and_names_them(capsys):
    from fmflow.cli.running import json_text

    text = json_text({"score": float("inf"), "parts": [1.0, float("-inf")], "x": float("nan")})
    assert strict_json(text) == {"score": None, "parts": [1.0, None], "x": None}
    assert "written as null at $.score (inf), $.parts[1] (-inf), $.x (nan)" in capsys.readouterr().err
    assert strict_json(json_text("caf\udce9")) == "caf\udce9"  # text stdout cannot encode: escaped, valid


@pytest.mark.parametrize("flags", [["--json"]])
def test_a_file_with_errors_keeps_stdout_for_the_result(tmp_path, flags):
    path = write(tmp_path, '''
        flow f(question: str) -> str {
          return quesiton
        }
    ''')
    result = fmflow(tmp_path, "run", path, "-i", "question=x", *flags)
    assert (result.returncode, result.stdout) == (1, "")
    assert "error[E101]" in result.stderr and "did you mean 'question'?" in result.stderr
    no_traceback(result)


# ------------------------------------------------------------ a reader that leaves

def into_closed_pipe(cwd, *args) -> tuple[int, str]:
    """Run fmflow with stdout a pipe whose reader has already gone (`fmflow … | true`)."""
    reader, writer = os.pipe()
    os.close(reader)
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    try:
        result = subprocess.run([sys.executable, "-m", "fmflow", *map(str, args)], cwd=cwd, env=environment,
                                stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(writer)
    return result.returncode, result.stderr


BROKEN = '''
    flow f(question: str) -> str {
      return quesiton
    }
'''
CLEAN = '''
    flow f(question: str) -> str {
      return question
    }
'''


@pytest.mark.parametrize("source, args, status", [
    (BROKEN, ["check"], 1),
    (BROKEN, ["check", "--format", "json"], 1),
    (CLEAN, ["check", "--format", "json"], 0),
    (CLEAN, ["graph"], 0),
    (BROKEN, ["graph"], 1),
    (CLEAN, ["run", "-i", "question=x", "--json"], 0),
    (CLEAN, ["run", "-i", "question=x"], 0),
])
def test_a_broken_pipe_keeps_the_exit_status(tmp_path, source, args, status):
    path = write(tmp_path, source)
    got, stderr = into_closed_pipe(tmp_path, args[0], path, *args[1:])
    assert got == status, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "Broken pipe" not in stderr


def test_pipefail_sees_the_status_of_check(tmp_path):
    path = write(tmp_path, BROKEN)
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    script = f'set -o pipefail; "{sys.executable}" -m fmflow check "{path}" | true'
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1, result.stderr


# ------------------------------------------------------------ a damaged trace

def test_trace_show_reads_what_it_can_of_a_damaged_trace(tmp_path):
    path = write(tmp_path, '''
        flow f(x: str) -> str {
          y = x | upper
          return y
        }
    ''')
    assert fmflow(tmp_path, "run", path, "-i", "x=日本語のテキスト").returncode == 0
    [trace_file] = list((tmp_path / ".fmflow" / "runs").glob("*.jsonl"))
    data = trace_file.read_bytes()
    kanji = "日".encode()
    cut = data.rindex(kanji) + 1  # inside the last 日 of the file
    run_id = traces(tmp_path)[0][0]["run_id"]
    trace_file.write_bytes(data[:cut] + b"\nnot json at all\n[1, 2]\n"
                           + b'{"type": "span", "id": [1], "parent": {"a": 1}, "start": "soon", "kind": "odd"}\n'
                           + b"\xff\xfe\n" + b'{"type": "span", "id": "s9", "kind": "cut"')
    shown = fmflow(tmp_path, "trace", "show")
    assert shown.returncode == 0, shown.stderr
    no_traceback(shown)
    assert run_id in shown.stdout and "assign y (line 3)" in shown.stdout  # what came before the cut
    assert "status unfinished" in shown.stdout  # the end record was cut off
    assert "odd" in shown.stdout  # a span of an odd shape is still shown
    assert "skipped 5 unreadable lines" in shown.stderr
    assert "not UTF-8 text (cut inside a character?)" in shown.stderr and "cut short" in shown.stderr
