"""`fmflow run` against a hostile or careless user and a flaky world, through real subprocesses:
secrets, damaged caches, templates, tools that hang, exit or return garbage, Ctrl-C, bad text."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_run import ROOT, fmflow, no_traceback, traces, write

SECRET = "planted-Secret-6f1d9a"
KEY = "sk-test-0a1b2c3d4e5f6a7b8c9d"
URL_KEY = "urlpass-9e8d7c6b5a"
OPENAI_KEY = "sk-openai-1f2e3d4c5b6a7980"


def everything_written(tmp_path: Path, *results) -> str:
    """stdout and stderr of the runs and every file fmflow wrote below .fmflow/."""
    files = [p for p in (tmp_path / ".fmflow").rglob("*") if p.is_file()]
    texts = [p.read_bytes().decode("utf-8", "replace") for p in files]
    return "\n".join([*texts, *(r.stdout + r.stderr for r in results)])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# ------------------------------------------------------------------ secrets

SECRETS_FLOW = f'''
    model echo {{
      provider: "replay"
      temperature: 0
      api_key_env: "FMFLOW_TEST_KEY"
      options: {{ echo: true }}
    }}
    model remote {{
      provider: "openai"
      name: "gpt-4o-mini"
      base_url: "http://fmflow:{URL_KEY}@127.0.0.1:{closed_port()}/v1"
      api_key_env: "FMFLOW_TEST_KEY"
    }}
    prompt say(x: str, k: str) -> str {{
      model: echo
      template: "{{{{ x }}}} {{{{ k }}}}"
    }}
    prompt ask(q: str) -> str {{
      model: remote
      template: "{{{{ q }}}}"
    }}
    flow talk(x: str) -> str {{
      k = env("FMFLOW_TEST_SECRET")
      said = say(x: x, k: k)
      return said
    }}
    flow fetch(q: str) -> str {{
      return ask(q)
    }}
'''


def test_planted_secrets_appear_in_no_file_and_no_output(tmp_path):
    path = write(tmp_path, SECRETS_FLOW)
    env = {"FMFLOW_TEST_SECRET": SECRET, "FMFLOW_TEST_KEY": KEY, "OPENAI_API_KEY": OPENAI_KEY}
    echoed = f"{KEY} {OPENAI_KEY} http://u:{URL_KEY}@h"
    runs = [fmflow(tmp_path, "run", path, "--flow", "talk", "-i", f"x={echoed}", env=env) for _ in range(2)]
    runs.append(fmflow(tmp_path, "run", path, "--flow", "talk", "--json", "-i", f"x={echoed}", env=env))
    failed = fmflow(tmp_path, "run", path, "--flow", "fetch", "-i", "q=hi", env=env)
    assert [r.returncode for r in runs] == [0, 0, 0] and failed.returncode == 1, failed.stderr
    assert runs[0].stdout.strip() == "*** *** http://***@h ***"
    assert "could not reach http://***@127.0.0.1" in failed.stderr
    text = everything_written(tmp_path, *runs, failed)
    for secret in (SECRET, KEY, URL_KEY, OPENAI_KEY):
        assert secret not in text
    assert any(span.get("cache_hit") for span in traces(tmp_path)[1])   # the second run read the cache
    for result in (*runs, failed):
        no_traceback(result)


def test_a_key_pasted_into_api_key_env_is_a_check_error_that_does_not_repeat_it(tmp_path):
    path = write(tmp_path, f'''
        model m {{
          provider: "openai"
          api_key_env: "{KEY}"
        }}
        prompt ask(q: str) -> str {{
          model: m
          template: "{{{{ q }}}}"
        }}
        flow f(q: str) -> str {{
          return ask(q)
        }}
    ''')
    result = fmflow(tmp_path, "run", path, "-i", "q=hi")
    assert result.returncode == 1
    message = next(line for line in result.stdout.splitlines() if "error[E201]" in line)
    assert "this looks like a key, not a variable name" in message and KEY not in message
    assert not (tmp_path / ".fmflow").exists()   # nothing ran, nothing was written
    no_traceback(result)


# ------------------------------------------------------------------ the cache

CACHED = '''
    model m {
      provider: "replay"
      temperature: 0
      options: { responses: ["first answer", "second answer"] }
    }
    prompt p(x: str) -> str {
      model: m
      template: "{{ x }}"
    }
    flow f(x: str) -> str {
      return p(x)
    }
'''


def cache_file(tmp_path: Path) -> Path:
    return tmp_path / ".fmflow" / "cache" / "responses.sqlite3"


def fill_cache(tmp_path: Path, count: int = 300) -> Path:
    """Run once, then add rows so the file spans many pages, and fold the WAL into it."""
    path = write(tmp_path, CACHED)
    assert fmflow(tmp_path, "run", path, "-i", "x=q").stdout.strip() == "first answer"
    conn = sqlite3.connect(cache_file(tmp_path))
    conn.executemany("INSERT INTO responses VALUES (?, ?, 0)",
                     [(f"filler-{i}", json.dumps({"text": "x" * 400})) for i in range(count)])
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


@pytest.mark.parametrize("keep", [0.5, 0.1, 100])
def test_a_truncated_cache_is_moved_aside_with_one_warning_and_rebuilt(tmp_path, keep):
    path = fill_cache(tmp_path)
    size = cache_file(tmp_path).stat().st_size
    with open(cache_file(tmp_path), "r+b") as f:
        f.truncate(int(size * keep) if keep < 1 else keep)
    again = fmflow(tmp_path, "run", path, "-i", "x=q")
    assert again.returncode == 0 and again.stdout.strip() == "first answer"
    [warning] = warnings_in(again)
    assert str(Path(".fmflow") / "cache" / "responses.sqlite3") in warning and "is damaged" in warning
    assert (cache_file(tmp_path).parent / "responses.sqlite3.broken").exists()
    third = fmflow(tmp_path, "run", path, "-i", "x=q")
    assert third.stdout.strip() == "first answer" and not warnings_in(third)
    assert cache_hits(tmp_path) == [False, False, True]   # a miss after the damage, then the new cache answers
    no_traceback(again)


@pytest.mark.parametrize("row", ['{"text": null}', "not json {", "[1, 2]", '{"foo": 1}', '{"text": "a", "cost": "x"}',
                                 '"just text"'])
def test_a_tampered_cache_entry_is_a_miss_that_is_deleted(tmp_path, row):
    path = write(tmp_path, CACHED)
    assert fmflow(tmp_path, "run", path, "-i", "x=q").stdout.strip() == "first answer"
    conn = sqlite3.connect(cache_file(tmp_path))
    conn.execute("UPDATE responses SET value = ?", (row,))
    conn.commit()
    conn.close()
    again = fmflow(tmp_path, "run", path, "-i", "x=q")
    assert again.returncode == 0 and again.stdout.strip() == "first answer"
    [warning] = warnings_in(again)
    assert "held a damaged entry" in warning and "responses.sqlite3" in warning
    assert cache_hits(tmp_path) == [False, False]
    conn = sqlite3.connect(cache_file(tmp_path))
    assert [json.loads(v) for (v,) in conn.execute("SELECT value FROM responses")] == [
        {"text": "first answer", "tokens_in": 1, "tokens_out": 2, "cost": None, "model": "m"}]
    conn.close()
    no_traceback(again)


def cache_hits(tmp_path: Path) -> list[bool]:
    """Per run, oldest first: whether its model call was answered from the cache."""
    return [next(s["cache_hit"] for s in trace if s.get("kind") == "model") for trace in traces(tmp_path)]


def warnings_in(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("fmflow: warning:")]


# ------------------------------------------------------------------ templates

def test_a_template_cannot_change_a_flow_value(tmp_path):
    path = write(tmp_path, '''
        model m {
          provider: "replay"
          options: { echo: true }
        }
        prompt p(tags: list[str]) -> str {
          model: m
          template: "{{ tags.append('x') }}{{ tags }}"
        }
        flow f(tags: list[str]) -> str {
          return p(tags)
        }
    ''')
    result = fmflow(tmp_path, "run", path, "-i", 'tags=["a"]')
    assert result.returncode == 1
    assert "prompt 'p': template failed to render: line 1: access to attribute 'append'" in result.stderr
    assert "cannot change" in result.stderr
    no_traceback(result)


def test_a_runaway_template_stops_with_an_error_naming_the_prompt(tmp_path):
    path = write(tmp_path, '''
        model m {
          provider: "replay"
          options: { echo: true }
        }
        prompt p(x: str) -> str {
          model: m
          template: """
            {% for i in range(99999) %}{% for j in range(99999) %}{{ x }}{% endfor %}{% endfor %}
          """
        }
        flow f(x: str) -> str {
          return p(x)
        }
    ''')
    result = fmflow(tmp_path, "run", path, "-i", "x=hello")
    assert result.returncode == 1
    assert "prompt 'p': template failed to render: line 1:" in result.stderr
    assert "1,000,000 characters" in result.stderr
    no_traceback(result)


# ------------------------------------------------------------------ tools

TOOLS = '''
    import math, os, pathlib, sys, time

    def sleepy(x):
        pathlib.Path("started").write_text("yes")
        time.sleep(600)
        return x

    async def asleepy(x):
        import asyncio
        pathlib.Path("started").write_text("yes")
        await asyncio.sleep(600)
        return x

    def cycle(x):
        items = [1]
        items.append(items)
        return items

    class Unprintable:
        def __str__(self):
            raise ValueError("no str")
        __repr__ = __str__

    def unprintable(x):
        return Unprintable()

    def raises_unprintable(x):
        class Odd(Exception):
            def __str__(self):
                raise ValueError("no str")
        raise Odd()

    def plain_object(x):
        return object()

    def nan(x):
        return {"v": math.nan}

    def float_nan(x):
        return math.nan

    def exits(x):
        sys.exit(3)

    async def async_exits(x):
        sys.exit(4)

    def interrupts(x):
        raise KeyboardInterrupt

    def surrogate(x):
        return "a\\ud800b"
'''

TOOL_SIGNATURES = {
    "sleepy": 'str = python("my_tools:sleepy", timeout: 300ms)',
    "sleepy_forever": 'str = python("my_tools:sleepy")',
    "asleepy": 'str = python("my_tools:asleepy")',
    "cycle": 'json = python("my_tools:cycle")',
    "cycle_list": 'list[json] = python("my_tools:cycle")',
    "unprintable": 'json = python("my_tools:unprintable")',
    "unprintable_str": 'str = python("my_tools:unprintable")',
    "raises_unprintable": 'str = python("my_tools:raises_unprintable")',
    "plain_object": 'json = python("my_tools:plain_object")',
    "nan": 'json = python("my_tools:nan")',
    "float_nan": 'float = python("my_tools:float_nan")',
    "exits": 'str = python("my_tools:exits")',
    "async_exits": 'str = python("my_tools:async_exits")',
    "interrupts": 'str = python("my_tools:interrupts")',
}
# One tool and one flow `call_NAME` per line pair; the filter `surrogate` is piped into.
TOOL_FLOW = "\n".join(
    [f"tool {name}(x: str) -> {signature}" for name, signature in TOOL_SIGNATURES.items()]
    + ['filter surrogate(x: str) -> str = python("my_tools:surrogate")']
    + [f"flow call_{name}(x: str) -> json {{\n  return {name}(x)\n}}" for name in TOOL_SIGNATURES]
    + ["flow call_surrogate(x: str) -> json {\n  return x | surrogate\n}"]) + "\n"


def tool_project(tmp_path: Path) -> Path:
    write(tmp_path, TOOLS, "my_tools.py")
    return write(tmp_path, TOOL_FLOW)


def tool_line(name: str) -> int:
    return list(TOOL_SIGNATURES).index(name) + 1


def call(tmp_path: Path, name: str):
    tool_project(tmp_path)
    return fmflow(tmp_path, "run", "flow.fmflow", "--flow", f"call_{name}", "-i", "x=1")


@pytest.mark.parametrize("name, cause", [
    ("cycle", "it contains itself (a cycle)"),
    ("cycle_list", "it contains itself (a cycle) (at [1][1])"),
    ("unprintable", "it holds a Python 'Unprintable' object, which is not a JSON value"),
    ("unprintable_str", "expected a string"),
    ("raises_unprintable", "failed: Odd"),
    ("plain_object", "it holds a Python 'object' object, which is not a JSON value"),
    ("nan", "it holds NaN, a number JSON cannot represent (at [\"v\"])"),
    ("float_nan", "it holds NaN"),
    ("exits", "called sys.exit(3); a tool must return or raise"),
    ("async_exits", "called sys.exit(4)"),
    ("interrupts", "failed: KeyboardInterrupt"),
])
def test_a_tool_that_misbehaves_gives_a_located_tool_error(tmp_path, name, cause):
    result = call(tmp_path, name)
    assert result.returncode == 1, (result.stdout, result.stderr)
    message = one_line(result.stderr)
    assert message.startswith("fmflow: error: flow.fmflow:")
    function = name.removesuffix("_list").removesuffix("_str")
    where = f"tool '{name}' (my_tools:{function}) at flow.fmflow:{tool_line(name)}"
    assert where in message and cause in message, message
    assert "internal error" not in message
    no_traceback(result)
    [trace] = traces(tmp_path)
    assert trace[-1]["status"] == "error"


def test_a_tool_over_its_timeout_fails_naming_the_tool_its_line_and_the_limit(tmp_path):
    result = call(tmp_path, "sleepy")   # the tool sleeps 600s; fmflow waits 0.3s
    assert result.returncode == 1
    assert (f"tool 'sleepy' (my_tools:sleepy) at flow.fmflow:{tool_line('sleepy')} did not finish within its "
            "timeout of 0.3s") in one_line(result.stderr)
    no_traceback(result)


def test_lone_surrogates_from_a_filter_become_replacement_characters(tmp_path):
    result = call(tmp_path, "surrogate")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a\ufffdb\n"


# ------------------------------------------------------------------ Ctrl-C

def start(tmp_path: Path, *args) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    environment.pop("FMFLOW_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "fmflow", *map(str, args)], cwd=tmp_path, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)


SLOW_MODEL_FLOW = '''
    model slow {
      provider: "replay"
      options: { responses: [{ text: "late", delay: 600 }] }
    }
    tool mark(x: str) -> str = python("my_tools:mark")
    prompt p(x: str) -> str {
      model: slow
      template: "{{ x }}"
    }
    flow f(x: str) -> str {
      m = mark(x)
      return p(m)
    }
'''


@pytest.mark.parametrize("case", ["sync tool in a thread", "async tool", "model call"])
def test_one_ctrl_c_ends_the_run_at_once_with_status_130_and_an_interrupted_trace(tmp_path, case):
    if case == "model call":
        write(tmp_path, "import pathlib\ndef mark(x):\n    pathlib.Path('started').write_text('y')\n    return x\n",
              "my_tools.py")
        path, args = write(tmp_path, SLOW_MODEL_FLOW), ["-i", "x=hi"]
    else:
        path = tool_project(tmp_path)
        args = ["--flow", "call_sleepy_forever" if case.startswith("sync") else "call_asleepy", "-i", "x=1"]
    process = start(tmp_path, "run", path, *args)
    try:
        wait_for(tmp_path / "started", process)
        time.sleep(0.2)  # the call is under way
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)   # not the 600 s the tool or model would take
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert stderr.strip() == "fmflow: interrupted" and stdout == ""
    [trace] = traces(tmp_path)
    assert trace[-1]["type"] == "end" and trace[-1]["status"] == "interrupted"
