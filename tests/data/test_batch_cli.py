"""`fmflow batch` through real subprocesses: exit status, usage errors, and exactly-once across SIGKILL.

Every command runs in the test's tmp_path, so `.fmflow/` never lands in the
repository. Models are `replay` models (a subprocess cannot use an in-process
scripted provider).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SLOW = '''
    model slow {
      provider: "replay"
      options: { responses: [{ text: "ok", delay: 0.01 }], cycle: true }
    }
    prompt ask(q: str) -> str {
      model: slow
      template: "{{ q }}"
    }
    flow go(q: str) -> str {
      return ask(q) + " " + q
    }
'''


def environment() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("FMFLOW_DEBUG", None)
    return env


def fmflow(cwd, *args):
    return subprocess.run([sys.executable, "-m", "fmflow", *map(str, args)], cwd=cwd, env=environment(),
                          capture_output=True, text=True, timeout=300)


def start(cwd, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fmflow", *map(str, args)], cwd=cwd, env=environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def questions(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"q": f"q{i}"}) + "\n" for i in range(1, n + 1)), encoding="utf-8")
    return path


def check_exactly_once(out: Path, n: int) -> None:
    """Every input line once, with its own output; every output line whole JSON."""
    seen: dict[int, int] = {}
    for text in out.read_text(encoding="utf-8").splitlines():
        record = json.loads(text)
        seen[record["line"]] = seen.get(record["line"], 0) + 1
        assert record["output"] == f"ok q{record['line']}", record
    assert sorted(seen) == list(range(1, n + 1))
    assert set(seen.values()) == {1}, {line: k for line, k in seen.items() if k > 1}


def no_traceback(result) -> None:
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr


# ------------------------------------------------------------ exactly once

def committed_length(out: Path) -> int:
    """The output length the checkpoint vouches for (0 before the first commit)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{out}.fmflow-checkpoint?mode=ro", uri=True, timeout=10) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'progress'").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return 0
    return json.loads(row[0])["position"].get("output", 0) if row else 0


def kill_mid_batch(tmp_path, args, ready) -> bool:
    """Start a batch and SIGKILL it as soon as ``ready(output size, committed length)``.
    Returns False when the batch finished before that."""
    out = tmp_path / "out.jsonl"
    return kill_when(tmp_path, args, lambda: out.exists() and ready(out.stat().st_size, committed_length(out)))


def kill_when(cwd, args, ready) -> bool:
    """Start `fmflow ARGS…` and SIGKILL it as soon as ``ready()``; False when it finished before that."""
    process = start(cwd, *args)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if ready():
                break
            time.sleep(0.002)
        if process.poll() is not None:
            return False
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        return True
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


def test_killed_twice_and_resumed_the_output_holds_each_line_exactly_once(tmp_path):
    """Each kill leaves lines beyond the last commit (usually a torn one last): they must go."""
    flow = write(tmp_path / "flow.fmflow", SLOW)
    data = questions(tmp_path / "in.jsonl", 1000)
    out = tmp_path / "out.jsonl"
    args = ["batch", flow, "--input", data, "--output", out, "--concurrency", "4"]
    assert kill_mid_batch(tmp_path, args, lambda size, committed: size > committed > 0)
    first = committed_length(out)
    assert out.stat().st_size > first
    assert kill_mid_batch(tmp_path, [*args, "--resume"], lambda size, committed: size > committed > first)
    assert out.stat().st_size > committed_length(out) > first  # the second run made progress, then died
    result = fmflow(tmp_path, *args, "--resume")
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    check_exactly_once(out, 1000)
    assert "1,000 records: 1,000 ok, 0 failed (" in result.stderr  # some were finished before this run
    again = fmflow(tmp_path, *args, "--resume")  # nothing left: the output stays as it is
    assert again.returncode == 0
    check_exactly_once(out, 1000)


def test_killed_at_moments_in_between_ordered(tmp_path):
    flow = write(tmp_path / "flow.fmflow", SLOW)
    data = questions(tmp_path / "in.jsonl", 600)
    out = tmp_path / "out.jsonl"
    args = ["batch", flow, "--input", data, "--output", out, "--concurrency", "8", "--ordered"]
    resume: list[str] = []
    for bytes_past_commit in (1, 2000, 5000):  # just after a flush, and later
        before = committed_length(out) if out.exists() else 0
        if not kill_mid_batch(tmp_path, [*args, *resume],
                              lambda size, committed: size >= max(committed, before) + bytes_past_commit):
            break
        resume = ["--resume"]
    result = fmflow(tmp_path, *args, *resume)
    assert result.returncode == 0, result.stderr
    check_exactly_once(out, 600)
    assert [json.loads(t)["line"] for t in out.read_text().splitlines()] == list(range(1, 601))


# ------------------------------------------------------- status and errors

ECHO = '''
    model m {
      provider: "replay"
      options: { echo: true }
    }
    prompt say(q: str) -> str {
      model: m
      template: "{{ q }}"
    }
    flow go(q: str, n: int) -> str {
      return say(q) + str(n)
    }
'''


def test_exit_status_and_summary(tmp_path):
    flow = write(tmp_path / "flow.fmflow", ECHO)
    good = tmp_path / "good.jsonl"
    good.write_text('{"q": "a", "n": 1}\n{"q": "b", "n": 2}\n')
    result = fmflow(tmp_path, "batch", flow, "--input", good, "--output", "out.jsonl")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "2 records: 2 ok, 0 failed" in result.stderr
    assert "model calls: 2 (0 cached); tokens:" in result.stderr
    assert "records/s, engine local) -> out.jsonl" in result.stderr
    assert not (tmp_path / ".fmflow" / "runs").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "a", "n": 1}\n{"q": "b", "n": "x"}\n')
    result = fmflow(tmp_path, "batch", flow, "--input", bad, "--output", "out2.jsonl")
    assert result.returncode == 1
    assert "2 records: 1 ok, 1 failed" in result.stderr
    no_traceback(result)


@pytest.mark.parametrize("args, message", [
    (["--input", "missing.jsonl", "--output", "out.jsonl"], "cannot read 'missing.jsonl': no such file"),
    (["--input", "data.txt", "--output", "out.jsonl"], "cannot tell the format of 'data.txt'"),
    (["--input", "in.jsonl", "--output", "nowhere/out.jsonl"], "the folder .* does not exist"),
    (["--input", "in.jsonl", "--output", "taken.jsonl"], "already exists: pass --overwrite"),
    (["--input", "in.jsonl", "--output", "out.jsonl", "--resume"], "there is no checkpoint"),
    (["--input", "in.jsonl", "--output", "out.jsonl", "--concurrency", "0"], "concurrency must be at least 1"),
    (["--input", "in.jsonl", "--output", "out.jsonl", "--scheduler", "tcp://127.0.0.1:1"],
     "--scheduler goes with --engine dask"),
    (["--input", "in.jsonl", "--output", "out.jsonl", "--flow", "nope"], "no flow 'nope'"),
    (["--output", "out.jsonl"], "the following arguments are required: --input"),
])
def test_usage_errors(tmp_path, args, message):
    import re

    flow = write(tmp_path / "flow.fmflow", ECHO)
    (tmp_path / "in.jsonl").write_text('{"q": "a", "n": 1}\n')
    (tmp_path / "data.txt").write_text("x\n")
    (tmp_path / "taken.jsonl").write_text("keep me\n")
    result = fmflow(tmp_path, "batch", flow, *args)
    assert result.returncode == 2, result.stderr
    assert re.search(message, result.stderr), result.stderr
    no_traceback(result)
    assert (tmp_path / "taken.jsonl").read_text() == "keep me\n"
    assert not (tmp_path / "out.jsonl").exists()


def test_a_changed_flow_is_refused_on_resume(tmp_path):
    flow = write(tmp_path / "flow.fmflow", ECHO)
    (tmp_path / "in.jsonl").write_text('{"q": "a", "n": 1}\n')
    assert fmflow(tmp_path, "batch", flow, "--input", "in.jsonl", "--output", "out.jsonl").returncode == 0
    write(flow, ECHO.replace('str(n)', 'str(n * 2)'))
    result = fmflow(tmp_path, "batch", flow, "--input", "in.jsonl", "--output", "out.jsonl", "--resume")
    assert result.returncode == 2
    assert "the flow file or a file it imports changed since this batch started" in result.stderr
    result = fmflow(tmp_path, "batch", flow, "--input", "in.jsonl", "--output", "out.jsonl", "--overwrite")
    assert result.returncode == 0
    assert json.loads((tmp_path / "out.jsonl").read_text()) == {"line": 1, "output": "a2"}


def test_a_flow_with_errors_prints_its_diagnostics(tmp_path):
    flow = write(tmp_path / "flow.fmflow", "flow go(q: str) -> str {\n  return nope\n}\n")
    (tmp_path / "in.jsonl").write_text('{"q": "a"}\n')
    result = fmflow(tmp_path, "batch", flow, "--input", "in.jsonl", "--output", "out.jsonl")
    assert result.returncode == 1
    assert "error[E101]" in result.stdout
    assert not (tmp_path / "out.jsonl").exists()


def test_ctrl_c_saves_the_finished_records(tmp_path):
    flow = write(tmp_path / "flow.fmflow", SLOW)
    data = questions(tmp_path / "in.jsonl", 1000)
    out = tmp_path / "out.jsonl"
    args = ["batch", flow, "--input", data, "--output", out, "--concurrency", "4"]
    process = start(tmp_path, *args)
    try:
        while not out.exists() or out.stat().st_size == 0:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        assert "interrupted; the finished records are saved: continue with --resume" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    saved = committed_length(out)
    assert saved == out.stat().st_size > 0  # the last commit holds everything written before the stop
    result = fmflow(tmp_path, *args, "--resume")
    assert result.returncode == 0, result.stderr
    check_exactly_once(out, 1000)
