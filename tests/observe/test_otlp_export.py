"""OTLP export (LANGUAGE.md §10): real `fmflow run` subprocesses export to a receiver on loopback
that decodes the protobuf ExportTraceServiceRequest; the spans are checked attribute by attribute."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otlp_receiver import Receiver, attributes

ROOT = Path(__file__).resolve().parents[2]
PLANTED = "sk-planted-otlp-0123456789abcdef"

FLOW = '''\
model m {
  provider: "replay"
  name: "replay-request-model"
  temperature: 0.2
  max_tokens: 50
  retry: 2
  options: { responses: [
    { error: { status: 429, message: "slow down" } },
    { text: "the answer", tokens_in: 11, tokens_out: 3, cost: 0.00042, model: "replay-response-model" }
  ] }
}

tool shout(text: str) -> str = python("tools:shout")
tool boom(text: str) -> str = python("tools:boom")

prompt answer(q: str, key: str) -> str {
  model: m
  template: "Question: {{ q }} (key {{ key }})"
}

flow main(q: str) -> str {
  key = env("PLANTED_KEY")
  a = answer(q: q, key: key)
  loud = shout(text: a)
  return loud
}

flow broken(q: str) -> str {
  bad = boom(text: q)
  return bad
}
'''

TOOLS = '''\
def shout(text):
    return text.upper()

def boom(text):
    raise ValueError("the tool broke")
'''


def write_project(folder: Path) -> Path:
    (folder / "tools.py").write_text(TOOLS, encoding="utf-8")
    path = folder / "flow.fmflow"
    path.write_text(FLOW, encoding="utf-8")
    return path


def run(folder: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(PYTHONPATH=str(ROOT), PLANTED_KEY=PLANTED, **env)
    return subprocess.run([sys.executable, "-m", "fmflow", *args], cwd=folder, env=environment,
                          capture_output=True, text=True, timeout=120)


def header_of(folder: Path) -> dict:
    [trace] = sorted((folder / ".fmflow" / "runs").glob("*.jsonl"))
    return json.loads(trace.read_text(encoding="utf-8").splitlines()[0])


def jsonl_spans(folder: Path) -> list[dict]:
    [trace] = sorted((folder / ".fmflow" / "runs").glob("*.jsonl"))
    return [r for r in map(json.loads, trace.read_text(encoding="utf-8").splitlines()) if r["type"] == "span"]


def by_name(spans) -> dict:
    return {span.name: span for span in spans}


def test_a_run_exports_its_spans_with_the_genai_conventions(tmp_path):
    path = write_project(tmp_path)
    with Receiver() as receiver:
        result = run(tmp_path, "run", str(path), "--flow", "main", "-i", "q=why?",
                     env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                          "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "THE ANSWER"
        spans = receiver.spans()
        raw = b"".join(receiver.bodies)
    assert set(receiver.paths) == {"/v1/traces"}
    assert set(receiver.content_types) == {"application/x-protobuf"}
    assert {"service.name": "fmflow"}.items() <= receiver.resources()[0].items()

    # One trace per run, the id the JSONL header names; every JSONL span is exported.
    header = header_of(tmp_path)
    assert {span.trace_id.hex() for span in spans} == {header["trace_id"]}
    assert len(spans) == len(jsonl_spans(tmp_path))

    named = by_name(spans)
    flow, chat, prompt = named["invoke_workflow main"], named["chat replay-request-model"], named["prompt answer"]
    tool = named["execute_tool shout"]
    assert flow.parent_span_id == b""
    assert attributes(flow)["gen_ai.operation.name"] == "invoke_workflow"
    assert attributes(flow)["gen_ai.workflow.name"] == "main"
    # Parents: chat → prompt → the assignment `a = …` → the flow.
    assign_a = next(s for s in spans if s.name == "assign a")
    assert chat.parent_span_id == prompt.span_id
    assert prompt.parent_span_id == assign_a.span_id
    assert assign_a.parent_span_id == flow.span_id
    assert tool.parent_span_id == next(s for s in spans if s.name == "assign loud").span_id

    chat_attrs = attributes(chat)
    expected = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "replay", "gen_ai.system": "replay",
        "gen_ai.request.model": "replay-request-model", "gen_ai.response.model": "replay-response-model",
        "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 3,
        "gen_ai.response.finish_reasons": ["stop"], "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 50, "gen_ai.prompt.name": "answer", "fmflow.retries": 1,
        "fmflow.cache_hit": False, "fmflow.cost_usd": 0.00042,
    }
    assert expected.items() <= chat_attrs.items()
    assert chat.kind == chat.SPAN_KIND_CLIENT
    [retry] = chat.events
    assert retry.name == "fmflow.retry"
    assert {"attempt": 1, "status": 429, "error": "slow down"}.items() <= attributes(retry).items()
    # Message content is captured on request, with the run's secrets masked.
    messages = json.loads(chat_attrs["gen_ai.input.messages"])
    assert messages[-1]["role"] == "user"
    assert messages[-1]["parts"][0]["content"] == "Question: why? (key ***)"
    assert json.loads(chat_attrs["gen_ai.output.messages"])[0]["parts"][0]["content"] == "the answer"
    assert attributes(tool)["gen_ai.tool.name"] == "shout"
    assert json.loads(attributes(tool)["gen_ai.tool.call.result"]) == "THE ANSWER"
    assert PLANTED.encode() not in raw and PLANTED[:12].encode() not in raw

    # Real start and end times, the JSONL's own.
    jsonl = {r["name"]: r for r in jsonl_spans(tmp_path) if r["kind"] == "model"}
    record = jsonl["m"]
    assert abs(chat.start_time_unix_nano / 1e9 - record["start"]) < 1e-3
    assert abs(chat.end_time_unix_nano / 1e9 - record["end"]) < 1e-3
    assert chat.end_time_unix_nano > chat.start_time_unix_nano
    for span in spans:
        assert span.status.code != span.status.STATUS_CODE_ERROR


def test_message_content_stays_home_unless_asked_for(tmp_path):
    path = write_project(tmp_path)
    with Receiver() as receiver:
        result = run(tmp_path, "run", str(path), "--flow", "main", "-i", "q=why?",
                     env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
        assert result.returncode == 0, result.stderr
        spans = receiver.spans()
        raw = b"".join(receiver.bodies)
    chat = by_name(spans)["chat replay-request-model"]
    attrs = attributes(chat)
    assert attrs["gen_ai.usage.input_tokens"] == 11
    for key in ("gen_ai.input.messages", "gen_ai.output.messages"):
        assert key not in attrs
    assert "gen_ai.tool.call.result" not in attributes(by_name(spans)["execute_tool shout"])
    assert b"Question: why?" not in raw and b"the answer" not in raw and PLANTED.encode() not in raw


def test_a_failed_step_has_an_error_status(tmp_path):
    path = write_project(tmp_path)
    with Receiver() as receiver:
        result = run(tmp_path, "run", str(path), "--flow", "broken", "-i", "q=x",
                     env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
        assert result.returncode == 1
        spans = receiver.spans()
    named = by_name(spans)
    for name in ("execute_tool boom", "assign bad", "invoke_workflow broken"):
        span = named[name]
        assert span.status.code == span.status.STATUS_CODE_ERROR, name
        assert "the tool broke" in span.status.message
    assert attributes(named["execute_tool boom"])["error.type"] == "CallFailed"


def test_a_collector_that_is_down_costs_one_warning_and_nothing_else(tmp_path):
    path = write_project(tmp_path)
    with socket.socket() as probe:         # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run(tmp_path, "run", str(path), "--flow", "main", "-i", "q=why?",
                 env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})
    assert result.returncode == 0 and result.stdout.strip() == "THE ANSWER"
    warnings = [line for line in result.stderr.splitlines() if "cannot export traces" in line]
    assert len(warnings) == 1, result.stderr
    assert f"127.0.0.1:{port}" in warnings[0]
    assert "Traceback" not in result.stderr
    assert len(jsonl_spans(tmp_path)) > 0   # the JSONL trace is whole


def test_without_an_endpoint_nothing_of_opentelemetry_is_imported(tmp_path):
    path = write_project(tmp_path)
    script = textwrap.dedent(f'''
        import sys
        import fmflow
        flow = fmflow.load({str(path)!r}, "main", workdir={str(tmp_path)!r})
        assert flow.run(q="why?") == "THE ANSWER"
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
    ''')
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(PYTHONPATH=str(ROOT), PLANTED_KEY=PLANTED)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("record, expected", [
    ({"kind": "retrieval", "name": "kb", "collection": "docs", "inputs": {"query": "what?"}},
     {"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": "docs", "gen_ai.retrieval.query.text": "what?"}),
    ({"kind": "agent", "name": "helper"}, {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper"}),
    ({"kind": "model", "name": "m", "model": "gpt-x", "finish_reason": "length", "provider": "openai"},
     {"gen_ai.operation.name": "chat", "gen_ai.response.finish_reasons": ["length"],
      "gen_ai.provider.name": "openai"}),
])
def test_attributes_of_each_kind_of_step(record, expected):
    from fmflow.observe.otlp import attributes as otlp_attributes

    class Writer:
        run_id = "r"

    attrs = otlp_attributes(record, Writer(), capture=True)
    assert expected.items() <= attrs.items()


def test_sigterm_sends_the_spans_of_the_run_it_ends(tmp_path):
    import signal
    import time

    (tmp_path / "tools.py").write_text("import time\n\ndef nap(x, seconds):\n    time.sleep(seconds)\n"
                                       "    return x\n", encoding="utf-8")
    path = tmp_path / "slow.fmflow"
    path.write_text('tool nap(x: str, seconds: float) -> str = python("tools:nap", timeout: 120s)\n\n'
                    'flow main(x: str) -> str {\n  first = nap(x: x, seconds: 0.01)\n'
                    '  last = nap(x: first, seconds: 60.0)\n  return last\n}\n', encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    with Receiver() as receiver:
        environment.update(PYTHONPATH=str(ROOT), OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
        process = subprocess.Popen([sys.executable, "-m", "fmflow", "run", str(path), "-i", "x=hi"], cwd=tmp_path,
                                   env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while '"name":"first"' not in "".join(p.read_text() for p in (tmp_path / ".fmflow" / "runs").glob("*.jsonl")
                                               if (tmp_path / ".fmflow" / "runs").is_dir()):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
        assert process.returncode == -signal.SIGTERM
        named = by_name(receiver.spans())
    assert {"assign first", "execute_tool nap", "assign last", "invoke_workflow main"} <= set(named)
    assert attributes(named["assign last"]).get("fmflow.unfinished") is True
