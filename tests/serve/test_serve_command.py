"""`fmflow serve` end to end: a real process, a real HTTP client, SIGTERM (LANGUAGE.md §10)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import pytest

from servers import ServeProcess, run_fmflow, serve_env, write_flows

BROKEN = '''
flow f(question: str) -> str {
  return quesiton
}
'''


@pytest.fixture
def serve_process(tmp_path):
    """``serve_process(*args, env=…)`` → a started ServeProcess; always killed at teardown."""
    started: list[ServeProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServeProcess:
        process = ServeProcess(tmp_path, *args, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def test_serves_every_flow_of_a_file(tmp_path, serve_process):
    path = write_flows(tmp_path)
    server = serve_process(str(path))
    assert "serving 6 flows (hello, typed, fails, slow, paid, recall)" in server.stderr()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        body = client.post("/flows/hello", json={"q": "hi"}).json()
        assert body["output"] == "You said hi"
        assert (tmp_path / ".fmflow" / "runs" / f"{body['run_id']}.jsonl").is_file()  # the server's working folder
        assert client.post("/flows/typed", json={"n": "1"}).status_code == 422
        failed = client.post("/flows/fails", json={"text": "x"})
        assert failed.status_code == 500 and "Traceback" not in failed.text
        assert {f["name"] for f in client.get("/flows").json()["flows"]} >= {"hello", "typed"}
        assert "typed_input" in client.get("/openapi.json").json()["components"]["schemas"]
        assert "fmflow_requests_total" in client.get("/metrics").text
    assert "Traceback" not in server.stderr()
    assert "flow 'fails' failed" in server.stderr()  # the server's log says which run failed and why


def test_the_token_comes_from_the_environment(tmp_path, serve_process):
    server = serve_process(str(write_flows(tmp_path)), env=serve_env(FMFLOW_SERVE_TOKEN="from-env"))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        assert client.post("/flows/hello", json={"q": "x"}).status_code == 401
        ok = client.post("/flows/hello", json={"q": "x"}, headers={"Authorization": "Bearer from-env"})
        assert ok.status_code == 200


def test_the_body_limit_is_a_flag(tmp_path, serve_process):
    server = serve_process(str(write_flows(tmp_path)), "--max-body-size", "1KB")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/flows/hello", json={"q": "x" * 2000}).status_code == 413
        assert client.post("/flows/hello", json={"q": "x" * 500}).status_code == 200


def test_sigterm_lets_requests_in_flight_finish_then_exits_0(tmp_path, serve_process):
    server = serve_process(str(write_flows(tmp_path)))
    replies: list[httpx.Response] = []

    def slow_request() -> None:
        replies.append(httpx.post(f"{server.url}/flows/slow", json={"seconds": 2.5}, timeout=30))

    threads = [threading.Thread(target=slow_request) for _ in range(3)]
    for thread in threads:
        thread.start()
    _wait_for_in_flight(server.url, "slow", 3)
    server.terminate()
    refused = _refused_within(server.url, 2.0)  # stops accepting while the three are still running
    for thread in threads:
        thread.join(timeout=30)
    assert server.wait() == 0
    assert refused, "a new connection was still accepted after SIGTERM"
    assert [r.status_code for r in replies] == [200, 200, 200]
    for reply in replies:
        assert reply.json()["output"] == "slept 2.5"
        end = _trace_end(tmp_path, reply.json()["run_id"])
        assert end["status"] == "ok"


def test_runs_still_going_after_the_grace_period_are_cancelled_and_their_traces_closed(tmp_path, serve_process):
    server = serve_process(str(write_flows(tmp_path)), "--grace", "0.5")
    outcome: list[object] = []

    def very_slow() -> None:
        try:
            outcome.append(httpx.post(f"{server.url}/flows/slow", json={"seconds": 60}, timeout=60))
        except httpx.HTTPError as error:
            outcome.append(error)

    thread = threading.Thread(target=very_slow)
    thread.start()
    _wait_for_in_flight(server.url, "slow", 1)
    started = time.monotonic()
    server.terminate()
    assert server.wait(timeout=30) == 0
    thread.join(timeout=30)
    assert time.monotonic() - started < 30  # not the 60 s of the run
    assert not isinstance(outcome[0], httpx.Response) or outcome[0].status_code != 200
    traces = list((tmp_path / ".fmflow" / "runs").glob("*.jsonl"))
    assert len(traces) == 1
    end = json.loads(traces[0].read_text(encoding="utf-8").splitlines()[-1])
    assert end["type"] == "end" and end["status"] == "cancelled"


# ------------------------------------------------------------------ refusing to start


SWAPPED = '''
model scripted {
  provider: "replay"
  temperature: 0.2
  options: { responses: ["the declared model answered"] }
}

prompt ask(q: str) -> str {
  model: scripted
  template: "asked {{ q }}"
}

flow asking(q: str) -> str {
  return ask(q)
}

flow countdown(n: int) -> int {
  if n <= 0 {
    return 0
  }
  return countdown(n - 1)
}
'''


def test_model_swaps_and_the_depth_limit_hold_for_every_request(tmp_path, serve_process):
    path = write_flows(tmp_path, SWAPPED)
    server = serve_process(str(path), "--model", "scripted=replay:echo", "--max-depth", "3")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/flows/asking", json={"q": "hi"}).json()["output"] == "asked hi"
        assert client.post("/flows/countdown", json={"n": 2}).json()["output"] == 0
        deep = client.post("/flows/countdown", json={"n": 3})
        assert deep.status_code == 500
        assert "more than 3 nested flow calls" in deep.json()["error"]
        assert "countdown → countdown …" in deep.json()["error"]
    assert "Traceback" not in server.stderr()


def test_a_file_with_errors_prints_its_diagnostics_and_exits_1(tmp_path):
    good = write_flows(tmp_path)
    broken = tmp_path / "broken.fmflow"
    broken.write_text(BROKEN, encoding="utf-8")
    result = run_fmflow(tmp_path, "serve", str(good), str(broken), "--port", "0")
    assert result.returncode == 1
    assert "error[E101]" in result.stdout and "did you mean 'question'" in result.stdout
    assert "serving" not in result.stderr and "Traceback" not in result.stderr


def test_a_flow_name_in_two_files_is_a_usage_error(tmp_path):
    first = write_flows(tmp_path)
    (tmp_path / "copy").mkdir()
    second = write_flows(tmp_path / "copy")
    result = run_fmflow(tmp_path, "serve", str(first), str(second), "--port", "0")
    assert result.returncode == 2
    assert "flow 'hello' is declared in both" in result.stderr


@pytest.mark.parametrize("args, env, says", [
    (["--max-body-size", "lots"], {}, "--max-body-size expects a size"),
    (["--port", "70000"], {}, "--port must be between 0 and 65535"),
    (["--grace", "-1"], {}, "--grace must be zero or more seconds"),
    ([], {"FMFLOW_SERVE_TOKEN": " "}, "FMFLOW_SERVE_TOKEN is set but empty"),
    (["--model", "nocolon"], {}, "--model expects PROVIDER:NAME"),
])
def test_usage_errors_exit_2(tmp_path, args, env, says):
    result = run_fmflow(tmp_path, "serve", str(write_flows(tmp_path)), *args, env=serve_env(**env))
    assert result.returncode == 2 and says in result.stderr


def test_files_without_flows_are_a_usage_error(tmp_path):
    path = tmp_path / "types.fmflow"
    path.write_text("type T {\n  x: int\n}\n", encoding="utf-8")
    result = run_fmflow(tmp_path, "serve", str(path), "--port", "0")
    assert result.returncode == 2 and "no flow to serve" in result.stderr


def test_a_non_loopback_address_without_a_token_is_warned_about(tmp_path):
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: the bind fails after the
    # warning, so nothing ever listens beyond loopback.
    result = run_fmflow(tmp_path, "serve", str(write_flows(tmp_path)), "--host", "192.0.2.1", "--port", "0")
    assert "warning: serving on 192.0.2.1" in result.stderr and "FMFLOW_SERVE_TOKEN" in result.stderr
    assert result.returncode == 1 and "cannot listen on 192.0.2.1:0" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_a_clear_error(tmp_path, serve_process):
    server = serve_process(str(write_flows(tmp_path)))
    port = server.url.rsplit(":", 1)[1]
    result = run_fmflow(tmp_path, "serve", str(write_flows(tmp_path)), "--port", port)
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_fmflow_check_does_not_import_the_server(tmp_path):
    path = write_flows(tmp_path)
    code = ("import sys; from fmflow.cli import main; main(['check', sys.argv[1]]); "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'prometheus_client', 'starlette') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, str(path)], cwd=tmp_path, env=serve_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------ helpers


def _wait_for_in_flight(url: str, flow: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    sample = f'fmflow_requests_in_flight{{flow="{flow}"}} {float(count)}'
    while time.monotonic() < deadline:
        if sample in httpx.get(f"{url}/metrics", timeout=5).text:
            return
        time.sleep(0.05)
    raise AssertionError(f"never {count} requests in flight on {flow}")


def _refused_within(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
        except httpx.TransportError:
            return True
        time.sleep(0.05)
    return False


def _trace_end(folder, run_id: str) -> dict:
    lines = (folder / ".fmflow" / "runs" / f"{run_id}.jsonl").read_text(encoding="utf-8").splitlines()
    return json.loads(lines[-1])
