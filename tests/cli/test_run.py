"""`fmflow run`, `fmflow test` and `fmflow trace show` through real subprocesses (LANGUAGE.md §7).

Every command runs with the test's tmp_path as its working directory, so
`.fmflow/` (runs, cache) never lands in the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.fmflow"))


def fmflow(cwd, *args, env=None):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", **(env or {})}
    environment.pop("FMFLOW_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "fmflow", *map(str, args)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=120)


def write(tmp_path, text: str, name: str = "flow.fmflow") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def no_traceback(result) -> None:
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr


def traces(tmp_path) -> list[list[dict]]:
    runs = sorted((tmp_path / ".fmflow" / "runs").glob("*.jsonl"), key=lambda p: p.stat().st_mtime_ns)
    return [[json.loads(line) for line in p.read_text().splitlines()] for p in runs]


ECHO = '''
    model m {
      provider: "replay"
      temperature: 0
      options: { echo: true }
    }
    type Reply {
      text: str
      n: int
    }
    prompt say@1(x: str) -> str {
      model: m
      template: "v1 {{ x }}"
    }
    prompt say@2(x: str) -> str {
      model: m
      template: "v2 {{ x }}"
    }
    flow echo(text: str, n: int, tags: list[str]) -> Reply {
      said = say(text)
      return Reply(text: said + " " + join(tags, ","), n: n * 2)
    }
'''


# ------------------------------------------------------------ fmflow run

def test_run_with_inputs(tmp_path):
    path = write(tmp_path, ECHO)
    result = fmflow(tmp_path, "run", path, "-i", "text=hello world", "-i", "n=21", "-i", 'tags=["a","b"]')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"text": "v2 hello world a,b", "n": 42}
    assert "trace:" in result.stderr
    assert len(traces(tmp_path)) == 1
    no_traceback(result)


def test_a_str_input_is_taken_as_is(tmp_path):
    path = write(tmp_path, ECHO)
    result = fmflow(tmp_path, "run", path, "--json", "-i", "text=42", "-i", "n=1", "-i", "tags=[]")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["text"] == "v2 42 "


def test_input_from_a_file(tmp_path):
    path = write(tmp_path, ECHO)
    (tmp_path / "question.txt").write_text("from a file\nsecond line", encoding="utf-8")
    (tmp_path / "tags.json").write_text('["x", "y"]', encoding="utf-8")
    result = fmflow(tmp_path, "run", path, "--json", "-i", "text=@question.txt", "-i", "n=0",
                    "-i", "tags=@tags.json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"text": "v2 from a file\nsecond line x,y", "n": 0}


def test_input_json(tmp_path):
    path = write(tmp_path, ECHO)
    inputs = {"text": "t", "n": 5, "tags": ["k"]}
    result = fmflow(tmp_path, "run", path, "--json", "--input-json", json.dumps(inputs))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"text": "v2 t k", "n": 10}
    (tmp_path / "inputs.json").write_text(json.dumps(inputs), encoding="utf-8")
    result = fmflow(tmp_path, "run", path, "--json", "--input-json", "@inputs.json", "-i", "n=1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"text": "v2 t k", "n": 2}  # -i wins over --input-json


def test_json_prints_only_json_on_stdout(tmp_path):
    path = write(tmp_path, ECHO)
    result = fmflow(tmp_path, "run", path, "--json", "-i", "text=hi", "-i", "n=1", "-i", 'tags=["a"]')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"text": "v2 hi a", "n": 2}
    assert result.stdout.strip().count("\n") == 0
    assert "trace" not in result.stdout


def test_a_str_result_is_printed_as_text(tmp_path):
    path = write(tmp_path, '''
        flow f(x: str) -> str {
          return x | upper
        }
    ''')
    result = fmflow(tmp_path, "run", path, "-i", "x=hey")
    assert (result.returncode, result.stdout) == (0, "HEY\n")
    result = fmflow(tmp_path, "run", path, "-i", "x=hey", "--json")
    assert (result.returncode, result.stdout) == (0, '"HEY"\n')


def test_pin_chooses_a_prompt_version(tmp_path):
    path = write(tmp_path, ECHO)
    args = ["run", path, "--json", "--input-json", '{"text": "t", "n": 1, "tags": []}']
    assert json.loads(fmflow(tmp_path, *args, "--pin", "say@1").stdout)["text"] == "v1 t "
    assert json.loads(fmflow(tmp_path, *args).stdout)["text"] == "v2 t "
    bad = fmflow(tmp_path, *args, "--pin", "say")
    assert bad.returncode == 2 and "--pin" in bad.stderr


def test_model_option_answers_prompts_that_name_none(tmp_path):
    path = write(tmp_path, '''
        model pinned {
          provider: "replay"
          options: { responses: ["from pinned"] }
        }
        prompt p(x: str) -> str {
          template: "echo {{ x }}"
        }
        prompt q(x: str) -> str {
          model: pinned
          template: "other {{ x }}"
        }
        flow f(x: str) -> str {
          return p(x) + " / " + q(x)
        }
    ''')
    # --model is the default model: prompts that name a model keep it.
    result = fmflow(tmp_path, "run", path, "--model", "replay:echo", "-i", "x=1")
    assert (result.returncode, result.stdout) == (0, "echo 1 / from pinned\n"), result.stderr


def test_flow_choice(tmp_path):
    path = write(tmp_path, '''
        flow a(x: str) -> str {
          return "a" + x
        }
        flow b(x: str) -> str {
          return "b" + x
        }
    ''')
    assert fmflow(tmp_path, "run", path, "--flow", "b", "-i", "x=1").stdout == "b1\n"
    several = fmflow(tmp_path, "run", path, "-i", "x=1")
    assert several.returncode == 2 and "several flows" in several.stderr
    unknown = fmflow(tmp_path, "run", path, "--flow", "c", "-i", "x=1")
    assert unknown.returncode == 2 and "'c'" in unknown.stderr
    no_traceback(several)
    no_traceback(unknown)


def test_no_cache(tmp_path):
    path = write(tmp_path, ECHO)
    args = ["run", path, "--json", "--input-json", '{"text": "t", "n": 1, "tags": []}']
    assert fmflow(tmp_path, *args).returncode == 0
    assert fmflow(tmp_path, *args).returncode == 0
    assert fmflow(tmp_path, *args, "--no-cache").returncode == 0
    hits = [[r["cache_hit"] for r in run if r.get("kind") == "model"] for run in traces(tmp_path)]
    assert hits == [[False], [True], [False]]


def test_no_cache_neither_reads_nor_writes(tmp_path):
    path = write(tmp_path, ECHO)
    args = ["run", path, "--json", "--input-json", '{"text": "t", "n": 1, "tags": []}']
    assert fmflow(tmp_path, *args, "--no-cache").returncode == 0
    assert fmflow(tmp_path, *args).returncode == 0
    hits = [[r["cache_hit"] for r in run if r.get("kind") == "model"] for run in traces(tmp_path)]
    assert hits == [[False], [False]]


RUNTIME_ERROR = '''
    tool explode(text: str) -> int = python("boom:explode")
    flow crash(x: str) -> int {
      y = x + "!"
      n = explode(y)
      return n
    }
'''


def test_a_runtime_error_prints_flow_line_and_cause(tmp_path):
    path = write(tmp_path, RUNTIME_ERROR)
    (tmp_path / "boom.py").write_text("def explode(text):\n    raise KeyError('no such thing: ' + text)\n")
    result = fmflow(tmp_path, "run", path, "-i", "x=q")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "flow 'crash'" in result.stderr
    assert "flow.fmflow:5" in result.stderr
    assert "explode" in result.stderr and "no such thing: q!" in result.stderr
    no_traceback(result)


def test_a_runtime_error_with_json_keeps_stdout_empty(tmp_path):
    path = write(tmp_path, RUNTIME_ERROR)
    (tmp_path / "boom.py").write_text("def explode(text):\n    raise ValueError('nope')\n")
    result = fmflow(tmp_path, "run", path, "--json", "-i", "x=q")
    assert (result.returncode, result.stdout) == (1, "")
    assert "nope" in result.stderr
    no_traceback(result)


def test_a_file_with_errors_exits_1_with_diagnostics(tmp_path):
    path = write(tmp_path, '''
        flow f(question: str) -> str {
          return quesiton
        }
    ''')
    result = fmflow(tmp_path, "run", path, "-i", "question=x")
    assert result.returncode == 1
    assert "E101" in result.stdout + result.stderr
    no_traceback(result)


@pytest.mark.parametrize("args, expected", [
    (["-i", "nope=1"], "nope"),                      # unknown input
    (["-i", "novalue"], "KEY=VALUE"),                # bad -i
    (["-i", "=3"], "KEY=VALUE"),                     # bad -i
    (["-i", "text=@missing.txt"], "missing.txt"),    # unreadable file
    (["--input-json", "{not json"], "--input-json"),
    (["--input-json", "[1, 2]"], "--input-json"),
    (["--model", "no-colon"], "PROVIDER:NAME"),      # bad --model
    (["--model", "replay:"], "PROVIDER:NAME"),
    (["-i", "text=t", "-i", "n=three"], "expected an integer"),   # a value of the wrong type
    (["-i", "text=t", "-i", "tags=[a"], "not valid JSON"),        # malformed JSON for a list
])
def test_usage_errors_exit_2(tmp_path, args, expected):
    path = write(tmp_path, ECHO)
    given = {a.partition("=")[0] for a in args if "=" in a}
    base = [part for key, value in (("n", "1"), ("tags", "[]")) if key not in given
            for part in ("-i", f"{key}={value}")]  # an input given twice is an error of its own
    result = fmflow(tmp_path, "run", path, *base, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert expected in result.stderr
    assert result.stdout == ""
    no_traceback(result)
    assert not (tmp_path / ".fmflow" / "runs").exists() or not traces(tmp_path)


@pytest.mark.parametrize("inputs", [{"text": "t", "n": 1, "tags": [], "nope": 1}, {"text": "t", "n": 1}])
def test_unknown_or_missing_input_json_keys_are_usage_errors(tmp_path, inputs):
    path = write(tmp_path, ECHO)
    result = fmflow(tmp_path, "run", path, "--input-json", json.dumps(inputs))
    assert result.returncode == 2, (result.stdout, result.stderr)
    no_traceback(result)


def test_a_missing_file_is_a_usage_error(tmp_path):
    result = fmflow(tmp_path, "run", tmp_path / "nope.fmflow")
    assert result.returncode == 2
    no_traceback(result)


def test_an_input_of_the_wrong_type_fails_clearly(tmp_path):
    path = write(tmp_path, ECHO)
    result = fmflow(tmp_path, "run", path, "-i", "text=t", "-i", "n=many", "-i", "tags=[]")
    assert result.returncode in (1, 2)
    assert "'n'" in result.stderr
    no_traceback(result)


def test_run_the_hello_example(tmp_path):
    result = fmflow(tmp_path, "run", ROOT / "examples" / "hello" / "hello.fmflow", "--json", "-i", "name=Ada")
    assert result.returncode == 0, result.stderr
    assert "Ada" in json.loads(result.stdout)["text"]
    assert (tmp_path / ".fmflow" / "runs").is_dir()


# ------------------------------------------------------------ fmflow trace show

def test_trace_show_prints_the_tree(tmp_path):
    path = write(tmp_path, ECHO)
    run = fmflow(tmp_path, "run", path, "--input-json", '{"text": "t", "n": 1, "tags": []}')
    assert run.returncode == 0, run.stderr
    [trace] = traces(tmp_path)
    run_id = trace[0]["run_id"]
    for which in ([], ["last"], [run_id], [run_id[:-2]]):
        shown = fmflow(tmp_path, "trace", "show", *which)
        assert shown.returncode == 0, shown.stderr
        out = shown.stdout
        assert run_id in out
        assert "flow echo" in out
        assert "assign said" in out and "return" in out
        assert "prompt say" in out and "v2" in out
        assert "model m" in out
        assert "├─" in out or "└─" in out
        lines = out.splitlines()
        flow_line = next(n for n, line in enumerate(lines) if "flow echo" in line and "─" in line)
        model_line = next(n for n, line in enumerate(lines) if "model m" in line)
        indent = lambda line: len(line) - len(line.lstrip(" │├└─"))  # noqa: E731
        assert indent(lines[model_line]) > indent(lines[flow_line])  # the model call is nested
        no_traceback(shown)


def test_trace_show_marks_cache_hits_and_retries(tmp_path):
    path = write(tmp_path, '''
        model m {
          provider: "replay"
          temperature: 0
          retry: 1
          options: { responses: [{ error: { status: 503, message: "busy", retry_after: 0 } }, { text: "fine" }] }
        }
        prompt p(x: str) -> str {
          model: m
          template: "{{ x }}"
        }
        flow f(x: str) -> str {
          return p(x)
        }
    ''')
    assert fmflow(tmp_path, "run", path, "-i", "x=q").stdout == "fine\n"
    shown = fmflow(tmp_path, "trace", "show").stdout
    assert "retries 1" in shown and "cache hit" not in shown.split("\n", 2)[2].rsplit("\n", 2)[0]
    assert fmflow(tmp_path, "run", path, "-i", "x=q").stdout == "fine\n"
    shown = fmflow(tmp_path, "trace", "show").stdout
    assert "cache hit" in shown and "1 cache hit" in shown


def test_trace_show_of_an_unknown_run(tmp_path):
    result = fmflow(tmp_path, "trace", "show", "nope")
    assert result.returncode == 2
    assert "no run" in result.stderr
    no_traceback(result)


# ------------------------------------------------------------ fmflow test

def test_fmflow_test_passes_on_the_examples_folder(tmp_path):
    result = fmflow(tmp_path, "test", ROOT / "examples")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert " 0 failed" in result.stdout
    no_traceback(result)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_fmflow_test_passes_on_every_example(tmp_path, example):
    result = fmflow(tmp_path, "test", example)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout and "FAIL" not in result.stdout


TESTED = '''
    model m { provider: "replay", options: { echo: true } }
    type Answer {
      text: str
      citations: list[str]
    }
    prompt answer(q: str) -> Answer {
      model: m
      template: "{{ q }}"
    }
    prompt polish(text: str) -> str {
      model: m
      template: "{{ text }}"
    }
    flow qa(q: str) -> Answer {
      a = answer(q)
      return a
    }
    flow qa_polished(q: str) -> str {
      a = answer(q)
      return polish(a.text)
    }
    test passes {
      flow: qa
      input: { q: "why?" }
      mock: { answer: { text: "because", citations: ["d1"] } }
      expect: [output.text == "because", "d1" in output.citations]
    }
'''


def test_fmflow_test_reports_passing_tests(tmp_path):
    path = write(tmp_path, TESTED)
    result = fmflow(tmp_path, "test", path)
    assert result.returncode == 0, result.stdout
    assert "PASS passes" in result.stdout
    assert "1 passed, 0 failed" in result.stdout


def test_a_failing_expectation_exits_1_with_the_expression_and_its_values(tmp_path):
    path = write(tmp_path, TESTED + '''
        test fails {
          flow: qa
          input: { q: "why?" }
          mock: { answer: { text: "because", citations: ["d1", "d2"] } }
          expect: [output.text == "because", len(output.citations) == 1, output.text == "why not"]
        }
    ''')
    result = fmflow(tmp_path, "test", path)
    assert result.returncode == 1
    out = result.stdout
    assert "PASS passes" in out and "FAIL fails" in out
    assert "len(output.citations) == 1" in out
    assert "len(output.citations) = 2" in out
    assert 'output.text == "why not"' in out
    assert 'output.text = "because"' in out
    assert "output.text == \"because\"\n" not in out  # the passing expectation is not reported
    assert "1 passed, 1 failed" in out
    no_traceback(result)


def test_an_unmocked_prompt_in_a_test_is_an_error_that_says_so(tmp_path):
    path = write(tmp_path, TESTED + '''
        test half_mocked {
          flow: qa_polished
          input: { q: "why?" }
          mock: { answer: { text: "because", citations: [] } }
          expect: [output == "because"]
        }
    ''')
    result = fmflow(tmp_path, "test", path)
    assert result.returncode == 1
    assert "FAIL half_mocked" in result.stdout
    assert "polish" in result.stdout and "not mocked" in result.stdout
    no_traceback(result)


def test_fmflow_test_of_a_file_with_errors_fails(tmp_path):
    path = write(tmp_path, '''
        flow f(x: str) -> str {
          return y
        }
        test t {
          flow: f
          input: { x: "a" }
          expect: [output == "a"]
        }
    ''')
    result = fmflow(tmp_path, "test", path)
    assert result.returncode == 1
    no_traceback(result)


def test_fmflow_test_never_reaches_a_model(tmp_path):
    # A mocked prompt on a model whose provider does not exist here still passes.
    path = write(tmp_path, '''
        model real {
          provider: "openai"
          name: "gpt-4o-mini"
          api_key_env: "FMFLOW_TEST_NO_SUCH_KEY"
        }
        prompt p(x: str) -> str {
          model: real
          template: "{{ x }}"
        }
        flow f(x: str) -> str {
          return p(x) + "!"
        }
        test mocked {
          flow: f
          input: { x: "a" }
          mock: { p: "mocked" }
          expect: [output == "mocked!"]
        }
    ''')
    result = fmflow(tmp_path, "test", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS mocked" in result.stdout


NOISY_TOOL = '''
import subprocess
import sys

OUT = sys.stdout  # a reference taken when the module loads


def shout(text):
    print("tool says hello")
    OUT.write("through a saved stdout\\n")
    subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
    return text.upper()
'''


def test_json_stdout_holds_only_the_result_when_a_tool_prints(tmp_path):
    (tmp_path / "noisy.py").write_text(NOISY_TOOL, encoding="utf-8")
    path = write(tmp_path, '''
        tool shout(text: str) -> str = python("noisy:shout")
        flow f(x: str) -> str {
          a = shout(x)
          b = shout(x + "!")
          return a + b
        }
    ''')
    result = fmflow(tmp_path, "run", path, "--json", "-i", "x=hi")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "HIHI!"
    assert result.stdout.count("\n") == 1
    for noise in ("tool says hello", "through a saved stdout", "from a child process"):
        assert result.stderr.count(noise) == 2, result.stderr  # on stderr, nothing lost
    plain = fmflow(tmp_path, "run", path, "-i", "x=hi")  # without --json the tool's output stays where it was
    assert "tool says hello" in plain.stdout and plain.stdout.rstrip().endswith("HIHI!")


def test_json_outputs_of_other_commands_hold_only_json(tmp_path):
    path = write(tmp_path, ECHO)
    check = fmflow(tmp_path, "check", path, "--format", "json", "--pin", "say@1")
    assert check.returncode == 0 and json.loads(check.stdout) == []
    render = fmflow(tmp_path, "render", path, "--prompt", "say", "-i", "x=hi", "--json", "--pin", "say@1")
    assert render.returncode == 0, render.stderr
    assert json.loads(render.stdout)["messages"] == [{"role": "user", "content": "v1 hi"}]


SCRIPTED_TESTS = '''
    model m { provider: "openai", name: "gpt-4o-mini", api_key_env: "FMFLOW_TEST_NO_SUCH_KEY" }
    type Ok {
      ok: bool
    }
    prompt judge(x: str) -> Ok {
      model: m
      template: "Judge {{ x }}"
      on_fail: reask(1)
    }
    flow review(x: str, round: int) -> bool {
      verdict = judge(x)
      if verdict.ok or round >= 3 {
        return verdict.ok
      }
      return review(x + "!", round + 1)
    }
    test loops_and_reasks {
      flow: review
      input: { x: "a", round: 1 }
      models: { m: ["nope", "{\\"ok\\": false}", "{\\"ok\\": true}"] }
      expect: [output, calls["judge"] == 3, calls["review"] == 2]
    }
    test runs_out {
      flow: review
      input: { x: "a", round: 1 }
      models: { m: ["{\\"ok\\": false}"] }
      expect: [output]
    }
'''


def test_fmflow_test_with_scripted_models_and_calls(tmp_path):
    path = write(tmp_path, SCRIPTED_TESTS)
    result = fmflow(tmp_path, "test", path)
    assert result.returncode == 1
    assert "PASS loops_and_reasks" in result.stdout and "FAIL runs_out" in result.stdout
    assert ("error: " in result.stdout and "model 'm' has no more scripted replies: test 'runs_out' gives 1, "
            "and prompt 'judge' asked for reply 2") in result.stdout
    assert "1 passed, 1 failed" in result.stdout
    no_traceback(result)
    deep = fmflow(tmp_path, "test", path, "--max-depth", "1")
    assert "FAIL loops_and_reasks" in deep.stdout and "more than 1 nested flow calls" in deep.stdout
