"""`fmflow test --record` against a real OpenAI-protocol server on loopback, then replaying the cassette.

The server (fault_server.py) runs in this process; `fmflow test` runs as a
subprocess, as a user would run it, and reaches the server through the
model's `base_url` (an env() value).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fmflow
from fault_server import FaultServer, ok, tool_calls

ROOT = Path(__file__).resolve().parents[2]

FLOW = '''
    model real {
      provider: "ollama"
      name: "tiny"
      base_url: env("FMFLOW_TEST_BASE_URL", "http://127.0.0.1:9/v1")
      temperature: 0
    }
    type Ok {
      ok: bool
      note: str
    }
    prompt answer(q: str) -> Ok {
      model: real
      template: "Answer {{ q }}"
      on_fail: reask(1)
    }
    flow ask(q: str) -> Ok {
      return answer(q)
    }
    test recorded {
      flow: ask
      input: { q: "why?" }
      expect: [output.note == "because", calls["answer"] == 2]
    }
'''


def write(tmp_path, text: str = FLOW) -> Path:
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def fmflow_test(tmp_path, *args, base_url: str = "http://127.0.0.1:9/v1"):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FMFLOW_TEST_BASE_URL": base_url}
    env.pop("FMFLOW_DEBUG", None)
    result = subprocess.run([sys.executable, "-m", "fmflow", "test", "flow.fmflow", *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stdout + result.stderr
    return result


@pytest.fixture
def server():
    with FaultServer() as running:
        yield running


def test_record_then_replay_then_a_changed_request_fails_naming_the_call(tmp_path, server):
    path = write(tmp_path)
    server.script(ok("not json"), ok('{"ok": true, "note": "because"}'))
    recorded = fmflow_test(tmp_path, "--record", base_url=server.base_url)
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert "PASS recorded" in recorded.stdout
    assert "recorded 2 replies in flow.fmflow.cassette.jsonl" in recorded.stderr
    assert len(server.requests) == 2  # the reask reached the server: the policy ran for real
    lines = [json.loads(line) for line in (tmp_path / "flow.fmflow.cassette.jsonl").read_text().splitlines()]
    assert [(e["test"], e["call"], e["model"], e["reply"]["text"]) for e in lines] == [
        ("recorded", "prompt 'answer'", "real", "not json"),
        ("recorded", "prompt 'answer'", "real", '{"ok": true, "note": "because"}')]
    assert lines[1]["request"]["messages"][-1]["content"].startswith("Your previous answer could not be used")

    replayed = fmflow_test(tmp_path)  # the server is not asked: its address is a closed port
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "PASS recorded" in replayed.stdout and len(server.requests) == 2

    path.write_text(path.read_text().replace("Answer {{ q }}", "Reply to {{ q }}"), encoding="utf-8")
    changed = fmflow_test(tmp_path)
    assert changed.returncode == 1
    assert ("prompt 'answer' (model real) sent a request that flow.fmflow.cassette.jsonl does not hold "
            "(first difference at message 1 (user: 'Reply to why?") in changed.stdout
    assert "fmflow test --record" in changed.stdout


def test_without_a_cassette_an_unmocked_prompt_stays_an_error(tmp_path, server):
    write(tmp_path)
    result = fmflow_test(tmp_path, base_url=server.base_url)
    assert result.returncode == 1
    assert "prompt 'answer' is called but not mocked, and its model 'real' is not scripted" in result.stdout
    assert server.requests == []


def test_recording_an_agent_keeps_its_tool_calls(tmp_path, server):
    (tmp_path / "counting.py").write_text("def word_count(text):\n    return len(text.split())\n", encoding="utf-8")
    write(tmp_path, FLOW.split("    type Ok")[0] + '''
        tool word_count(text: str) -> int = python("counting:word_count")
        agent counter(text: str) -> str {
          model: real
          tools: [word_count]
          template: "Count the words of: {{ text }}"
        }
        flow count(text: str) -> str {
          return counter(text)
        }
        test counts {
          flow: count
          input: { text: "a b c" }
          expect: [output == "3 words", calls["word_count"] == 1]
        }
    ''')
    server.script(tool_calls(("word_count", {"text": "a b c"})), ok("3 words"))
    assert fmflow_test(tmp_path, "--record", base_url=server.base_url).returncode == 0
    lines = [json.loads(line) for line in (tmp_path / "flow.fmflow.cassette.jsonl").read_text().splitlines()]
    assert lines[0]["reply"]["tool_calls"][0]["name"] == "word_count"
    replayed = fmflow_test(tmp_path)
    assert replayed.returncode == 0, replayed.stdout
    assert len(server.requests) == 2


def test_the_api_records_and_replays(tmp_path, server, monkeypatch):
    path = write(tmp_path)
    server.script(ok("not json"), ok('{"ok": true, "note": "because"}'))
    monkeypatch.setenv("FMFLOW_TEST_BASE_URL", server.base_url)
    report = fmflow.run_tests(path, record=True)
    assert [o.passed for o in report.outcomes] == [True]
    assert (report.cassette, report.recorded) == (str(path) + ".cassette.jsonl", 2)
    monkeypatch.setenv("FMFLOW_TEST_BASE_URL", "http://127.0.0.1:9/v1")
    again = fmflow.run_tests(path)
    assert [o.passed for o in again.outcomes] == [True] and again.cassette is None
    assert len(server.requests) == 2


def test_a_damaged_cassette_fails_its_tests_saying_so(tmp_path):
    write(tmp_path)
    (tmp_path / "flow.fmflow.cassette.jsonl").write_text('{"test": "recorded"}\nnot json\n', encoding="utf-8")
    result = fmflow_test(tmp_path)
    assert result.returncode == 1
    assert "flow.fmflow.cassette.jsonl:1: not a cassette line" in result.stdout


def test_recording_nothing_removes_a_stale_cassette(tmp_path):
    write(tmp_path, FLOW.replace('expect: [output.note == "because", calls["answer"] == 2]',
                                 'mock: { answer: { ok: true, note: "because" } }'))
    (tmp_path / "flow.fmflow.cassette.jsonl").write_text("", encoding="utf-8")
    result = fmflow_test(tmp_path, "--record")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing to record for flow.fmflow" in result.stderr
    assert not (tmp_path / "flow.fmflow.cassette.jsonl").exists()


def test_recording_one_test_again_keeps_the_replies_of_the_others(tmp_path, server):
    write(tmp_path, FLOW + '''
        test second {
          flow: ask
          input: { q: "how?" }
          expect: [output.note == "so"]
        }
    ''')
    server.script(ok("not json"), ok('{"ok": true, "note": "because"}'), ok('{"ok": true, "note": "so"}'))
    assert fmflow_test(tmp_path, "--record", base_url=server.base_url).returncode == 0
    cassette = tmp_path / "flow.fmflow.cassette.jsonl"
    before = [json.loads(line) for line in cassette.read_text().splitlines()]

    server.script(ok('{"ok": true, "note": "so"}'))
    again = fmflow_test(tmp_path, "--record", "--name", "second", base_url=server.base_url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "PASS second" in again.stdout and "recorded" not in again.stdout  # the other test did not run
    assert "recorded 1 reply in flow.fmflow.cassette.jsonl" in again.stderr
    assert len(server.requests) == 4
    after = [json.loads(line) for line in cassette.read_text().splitlines()]
    assert [e for e in after if e["test"] == "recorded"] == [e for e in before if e["test"] == "recorded"]
    assert [e["test"] for e in after] == ["recorded", "recorded", "second"]

    replayed = fmflow_test(tmp_path)  # both replay from the cassette: the server's address is a closed port
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "2 passed, 0 failed" in replayed.stdout and len(server.requests) == 4
