"""Hostile and flaky servers as a user meets them: `fmflow run` in a subprocess against fault_server.py.

Each test starts its own server on a loopback port and runs the command with
the test's tmp_path as its working directory (the trace lands there).
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fault_server import drip, error, gzip_bomb, no_content, ok

ROOT = Path(__file__).resolve().parents[2]
KEY_ENV = "FMFLOW_TEST_KEY"

# Runs the CLI with the default model deadline shortened, so that a test need
# not wait the real 120 s to see it end a call.
WITH_DEADLINE = ("import sys; import fmflow.providers.base as base; base.DEFAULT_TIMEOUT = float(sys.argv[1]); "
                 "from fmflow.cli import main; sys.exit(main(sys.argv[2:]))")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FMFLOW_DEBUG",)}
    env.update(PYTHONPATH=str(ROOT), NO_COLOR="1", TERM="xterm")
    env[KEY_ENV] = "sk-test-key"
    return env


def fmflow(cwd: Path, *args, timeout: float = 60, deadline: float | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fmflow"] if deadline is None else \
        [sys.executable, "-c", WITH_DEADLINE, str(deadline)]
    result = subprocess.run([*command, *map(str, args)], cwd=cwd, env=_env(), capture_output=True, text=True,
                            timeout=timeout)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def flow_file(tmp_path: Path, base_url: str, settings: str = "", provider: str = "openai") -> Path:
    model = (f'model m {{ provider: "{provider}", name: "gpt-4o-mini", base_url: "{base_url}", '
             f'api_key_env: "{KEY_ENV}"{", " + settings if settings else ""} }}')
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(f'''
        {model}
        prompt ask(q: str) -> str {{
          model: m
          template: "Q: {{{{ q }}}}"
        }}
        flow f(q: str) -> str {{
          return ask(q)
        }}
    '''), encoding="utf-8")
    return path


def model_spans(tmp_path: Path) -> list[dict]:
    [trace] = list((tmp_path / ".fmflow" / "runs").glob("*.jsonl"))
    records = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    return [r for r in records if r.get("type") == "span" and r.get("kind") == "model"]


# ------------------------------------------------------------ Retry-After and deadlines

def test_retry_after_longer_than_the_timeout_fails_at_once_and_says_so(tmp_path, server):
    server.script(error(429, "rate limited", retry_after="3600"))
    path = flow_file(tmp_path, server.base_url, "timeout: 5s, retry: 3")
    result = fmflow(tmp_path, "run", path, "-i", "q=x")
    assert result.returncode == 1 and result.stdout == ""
    assert "the server asked to wait 3600 s, longer than the model may wait (its timeout is 5s)" in result.stderr
    assert len(server.requests) == 1  # neither waited nor tried again
    [span] = model_spans(tmp_path)
    [attempt] = span["attempts"]
    assert attempt["retry_after"] == 3600 and attempt["waited"] == 0 and "3600 s" in attempt["error"]


def test_retry_after_on_a_model_without_timeout_is_bounded_by_the_default_deadline(tmp_path, server):
    server.script(error(503, "maintenance", retry_after="86400"))
    result = fmflow(tmp_path, "run", flow_file(tmp_path, server.base_url, "retry: 1"), "-i", "q=x")
    assert result.returncode == 1
    assert "asked to wait 86400 s, longer than the model may wait (its timeout is 120s)" in result.stderr


def test_a_retry_after_the_model_can_wait_for_is_honoured(tmp_path, server):
    server.script(error(429, "later", retry_after="1"), ok("done"))
    result = fmflow(tmp_path, "run", flow_file(tmp_path, server.base_url, "timeout: 5s, retry: 1"), "-i", "q=x")
    assert (result.returncode, result.stdout) == (0, "done\n"), result.stderr
    first, second = server.requests
    assert second.at - first.at >= 1.0


def test_the_refusal_to_wait_is_a_notice_on_a_terminal(tmp_path, server):
    server.script(error(429, "rate limited", retry_after="3600"), ok("from the fallback"))
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(f'''
        model m {{ provider: "openai", name: "a", base_url: "{server.base_url}", api_key_env: "{KEY_ENV}",
                   timeout: 5s, retry: 2, fallback: [backup] }}
        model backup {{ provider: "openai", name: "b", base_url: "{server.base_url}", api_key_env: "{KEY_ENV}" }}
        prompt ask(q: str) -> str {{
          model: m
          template: "Q: {{{{ q }}}}"
        }}
        flow f(q: str) -> str {{
          return ask(q)
        }}
    '''), encoding="utf-8")
    status, stdout, shown = _on_terminal(tmp_path, "run", path, "-i", "q=x")
    assert (status, stdout) == (0, "from the fallback\n")
    assert f"fmflow: model 'm': {server.base_url} answered 429: rate limited; the server asked to wait 3600 s" \
        in shown.replace("\r\n", "\n").replace("\n", "")
    # Without a terminal the run says nothing about it: the trace holds it.
    server.script(error(429, "rate limited", retry_after="3600"), ok("from the fallback"))
    quiet = fmflow(tmp_path, "run", path, "-i", "q=y", "--no-cache")
    assert quiet.returncode == 0 and "3600" not in quiet.stderr


def _on_terminal(cwd: Path, *args, timeout: float = 60) -> tuple[int, str, str]:
    """(status, stdout, what a terminal on stderr showed); a run past ``timeout`` is stopped and fails."""
    import select

    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "fmflow", *map(str, args)], cwd=cwd, env=_env(),
                               stdout=subprocess.PIPE, stderr=terminal, text=True)
    os.close(terminal)
    shown, ends = bytearray(), time.monotonic() + timeout
    try:
        while time.monotonic() < ends:
            if not select.select([controller], [], [], max(0.0, ends - time.monotonic()))[0]:
                continue
            try:
                data = os.read(controller, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not data:
                break
            shown += data
        else:
            process.kill()
            pytest.fail(f"fmflow {' '.join(map(str, args))} still running after {timeout:g}s")
        stdout = process.stdout.read()
        status = process.wait(timeout=timeout)
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        os.close(controller)
    return status, stdout, shown.decode("utf-8", "replace")


def test_a_dripping_server_cannot_outlast_the_default_deadline(tmp_path, server):
    # About 200 bytes at 20 a second: 10 s to finish, each read quick. The
    # default deadline (shortened to 1 s here, 120 s for real) ends the call.
    server.script(drip(0.05))
    started = time.monotonic()
    result = fmflow(tmp_path, "run", flow_file(tmp_path, server.base_url), "-i", "q=x", deadline=1.0)
    assert result.returncode == 1, result.stdout
    assert time.monotonic() - started < 8
    assert "within 1s" in result.stderr or "timed out after 1s (the default deadline" in result.stderr


def test_a_dripping_server_cannot_outlast_the_models_timeout(tmp_path, server):
    server.script(drip(0.05))
    result = fmflow(tmp_path, "run", flow_file(tmp_path, server.base_url, "timeout: 1s"), "-i", "q=x")
    assert result.returncode == 1 and ("within 1s" in result.stderr or "timed out after 1s" in result.stderr)


# ------------------------------------------------------------ reply size

def test_a_gzip_bomb_is_refused_once_without_retries(tmp_path, server):
    server.script(gzip_bomb(300), ok("never asked"))
    result = fmflow(tmp_path, "run", flow_file(tmp_path, server.base_url, "retry: 2"), "-i", "q=x")
    assert result.returncode == 1 and result.stdout == ""
    assert "the reply is larger than 32 MB once decoded" in result.stderr
    assert len(server.requests) == 1


# ------------------------------------------------------------ replies without an answer

def test_content_null_is_a_failed_attempt_not_an_empty_answer(tmp_path, server):
    server.script(no_content(), no_content())
    result = fmflow(tmp_path, "run", flow_file(tmp_path, server.base_url, "retry: 1"), "-i", "q=x")
    assert result.returncode == 1 and result.stdout == ""
    assert "the model returned no content" in result.stderr
    assert len(server.requests) == 2  # retried: the next reply may well have content


def test_content_null_then_an_answer_succeeds_and_the_trace_keeps_the_attempt(tmp_path, server):
    server.script(no_content(), ok("second time lucky"))
    result = fmflow(tmp_path, "run", flow_file(tmp_path, server.base_url, "retry: 1"), "-i", "q=x")
    assert (result.returncode, result.stdout) == (0, "second time lucky\n"), result.stderr
    [span] = model_spans(tmp_path)
    assert "the model returned no content" in span["attempts"][0]["error"]


def test_a_lone_surrogate_in_a_reply_does_not_lose_the_answer(tmp_path, server):
    from fault_server import Reply, completion

    body = json.dumps(completion("caf\udce9 ok"))  # "\udce9" without its pair: JSON allows it, UTF-8 cannot
    server.script(Reply(raw=body), Reply(raw=body))
    path = flow_file(tmp_path, server.base_url)
    result = fmflow(tmp_path, "run", path, "-i", "q=x")
    assert (result.returncode, result.stdout) == (0, "caf\ufffd ok\n"), result.stderr
    as_json = fmflow(tmp_path, "run", path, "-i", "q=x", "--json", "--no-cache")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == "caf\ufffd ok"
