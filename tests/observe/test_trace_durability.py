"""The buffered trace writer keeps every span through a normal exit, an exception, SIGINT and
SIGTERM, and loses at most the last fraction of a second on kill -9 (real subprocesses)."""

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
STEPS = 10

TOOLS = '''\
import time

def nap(x, seconds):
    time.sleep(seconds)
    return x

def boom(x):
    raise ValueError("broken on purpose")
'''


def flow_text(last: str) -> str:
    chain = "\n".join(f"  a{i} = nap(x: {'x' if i == 1 else f'a{i - 1}'}, seconds: 0.02)" for i in range(1, STEPS + 1))
    return f'''\
tool nap(x: str, seconds: float) -> str = python("tools:nap", timeout: 120s)
tool boom(x: str) -> str = python("tools:boom")

flow main(x: str) -> str {{
{chain}
  last = {last}
  return last
}}
'''


def project(folder: Path, last: str) -> Path:
    (folder / "tools.py").write_text(TOOLS, encoding="utf-8")
    path = folder / "flow.fmflow"
    path.write_text(flow_text(last), encoding="utf-8")
    return path


def environment() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, "PYTHONPATH": str(ROOT)}


def start(folder: Path, last: str) -> subprocess.Popen:
    path = project(folder, last)
    return subprocess.Popen([sys.executable, "-m", "fmflow", "run", str(path), "-i", "x=hi"], cwd=folder,
                            env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def trace_file(folder: Path) -> Path | None:
    found = sorted((folder / ".fmflow" / "runs").glob("*.jsonl")) if (folder / ".fmflow" / "runs").is_dir() else []
    return found[0] if found else None


def records(folder: Path) -> list[dict]:
    """Every line of the trace; each must be complete JSON (a torn last line is allowed only where said)."""
    return [json.loads(line) for line in trace_file(folder).read_text(encoding="utf-8").splitlines()]


def assigned(folder: Path) -> set[str]:
    return {r["name"] for r in records(folder) if r["type"] == "span" and r["kind"] == "assign"}


def wait_for_chain(folder: Path, process: subprocess.Popen) -> float:
    """Wait until the background writer has put the whole chain on disk, while the run goes on;
    the time when it had."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        path = trace_file(folder)
        if path is not None:
            names = set()
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    names.add(json.loads(line).get("name"))
                except ValueError:   # read while the writer was half-way through a write
                    pass
            if chain_names() <= names:
                return time.monotonic()
        time.sleep(0.05)
    raise AssertionError("the chain's spans never reached the file while the run went on")


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def chain_names() -> set[str]:
    return {f"a{i}" for i in range(1, STEPS + 1)}


def test_a_normal_run_keeps_every_span(tmp_path):
    code, out, err = finish(start(tmp_path, "nap(x: a10, seconds: 0.0)"))
    assert code == 0 and out.strip() == "hi", err
    found = records(tmp_path)
    assert found[0]["type"] == "run" and found[-1] == {**found[-1], "type": "end", "status": "ok"}
    spans = [r for r in found if r["type"] == "span"]
    assert assigned(tmp_path) == chain_names() | {"last"}
    assert len(spans) == 2 * (STEPS + 1) + 2       # each assignment and its tool call, the return, the flow
    assert [p.name for p in (tmp_path / ".fmflow" / "runs").iterdir()] == [found[0]["run_id"] + ".jsonl"]


def test_a_failed_run_keeps_every_span(tmp_path):
    code, _out, err = finish(start(tmp_path, "boom(x: a10)"))
    assert code == 1 and "broken on purpose" in err
    found = records(tmp_path)
    assert found[-1]["type"] == "end" and found[-1]["status"] == "error"
    assert assigned(tmp_path) == chain_names() | {"last"}
    [failed] = [r for r in found if r.get("kind") == "tool" and r["name"] == "boom"]
    assert "broken on purpose" in failed["error"]


@pytest.mark.parametrize("sig, status, code", [(signal.SIGINT, "interrupted", 130),
                                               (signal.SIGTERM, "terminated", -signal.SIGTERM)])
def test_a_signal_keeps_every_span_and_says_how_the_run_ended(tmp_path, sig, status, code):
    process = start(tmp_path, "nap(x: a10, seconds: 60.0)")
    wait_for_chain(tmp_path, process)
    process.send_signal(sig)
    returncode, _out, err = finish(process)
    assert returncode == code, err
    assert "Traceback" not in err
    found = records(tmp_path)
    assert found[-1]["type"] == "end" and found[-1]["status"] == status
    assert assigned(tmp_path) == chain_names() | {"last"}
    [last] = [r for r in found if r["type"] == "span" and r["name"] == "last"]
    assert last.get("unfinished") is True or last["error"] == "cancelled"


def test_kill_9_loses_at_most_the_last_fraction_of_a_second(tmp_path):
    process = start(tmp_path, "nap(x: a10, seconds: 60.0)")
    wait_for_chain(tmp_path, process)        # on disk while the run still goes on
    time.sleep(0.5)
    process.kill()
    finish(process)
    lines = trace_file(tmp_path).read_text(encoding="utf-8").splitlines()
    complete = [json.loads(line) for line in lines]       # valid JSONL, line by line
    assert complete[0]["type"] == "run" and all(r["type"] == "span" for r in complete[1:])
    assert {r["name"] for r in complete[1:] if r["kind"] == "assign"} == chain_names()


def test_spans_of_a_trace_never_closed_are_written_at_exit(tmp_path):
    script = textwrap.dedent(f'''
        from fmflow.observe.trace import TraceWriter
        trace = TraceWriter({str(tmp_path / "runs")!r}, run_id="open")
        for n in range(5):
            trace.start_span("step", f"s{{n}}").end(output=n)
        trace.start_span("step", "never-ended")
        raise RuntimeError("the script fails before it closes its trace")
    ''')
    result = subprocess.run([sys.executable, "-c", script], env=environment(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and "the script fails" in result.stderr
    written = [json.loads(line) for line in (tmp_path / "runs" / "open.jsonl").read_text().splitlines()]
    assert [r.get("name") for r in written if r["type"] == "span"] == [f"s{n}" for n in range(5)]


def test_a_forked_child_does_not_write_its_parents_traces(tmp_path):
    script = textwrap.dedent(f'''
        import os, sys, time
        from fmflow.observe.trace import TraceWriter
        trace = TraceWriter({str(tmp_path)!r}, run_id="parent")
        trace.start_span("step", "before-fork").end()
        child = os.fork()
        if child == 0:
            time.sleep(0.5)        # the child's writer thread, if any, would write the buffer by now
            sys.exit(0)            # and its exit hooks run
        os.waitpid(child, 0)
        trace.close()
    ''')
    result = subprocess.run([sys.executable, "-c", script], env=environment(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "parent.jsonl").read_text()
    assert text.count('"before-fork"') == 1 and text.count('"type":"run"') == 1
