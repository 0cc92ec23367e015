"""Every route of the served app, through a real HTTP client against uvicorn on loopback (LANGUAGE.md §10)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import load_catalog
from servers import write_flows

from fmflow.providers import register_provider
from fmflow.providers.replay import ReplayProvider, ScriptedProvider
from fmflow.serve import FlowNameClash

GOOD_TYPED = {"n": 2, "ratio": 1.5, "mood": "sad", "tags": ["a", "b"], "note": None}


def trace_records(folder: Path, run_id: str) -> list[dict]:
    path = folder / ".fmflow" / "runs" / f"{run_id}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def sse_events(text: str) -> list[tuple[str, dict]]:
    """(event, data) pairs of a server-sent event stream."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample, or None when absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        found = re.fullmatch(r"(\w+)(?:\{(.*)\})?", sample)
        if found is None or found.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2) or ""))
        if have == labels:
            return float(value)
    return None


# ------------------------------------------------------------------ running flows


def test_a_flow_answers_its_output_and_the_run_id_of_its_trace(serve_app, client, tmp_path):
    server = serve_app()
    reply = client.post(f"{server.url}/flows/hello", json={"q": "good morning"})
    assert reply.status_code == 200
    body = reply.json()
    assert body["output"] == "You said good morning"
    records = trace_records(tmp_path, body["run_id"])  # traces go where `fmflow run` puts them
    assert records[0]["type"] == "run" and records[0]["flow"] == "hello"
    assert records[-1]["type"] == "end" and records[-1]["status"] == "ok"


def test_typed_inputs_and_outputs(serve_app, client):
    server = serve_app()
    reply = client.post(f"{server.url}/flows/typed", json=GOOD_TYPED)
    assert reply.status_code == 200, reply.text
    assert reply.json()["output"] == {"text": "a,b", "score": 3.0}
    # An int is a float (JSON has one number type); an optional input may be null.
    assert client.post(f"{server.url}/flows/typed", json={**GOOD_TYPED, "ratio": 2}).json()["output"]["score"] == 4.0


def test_each_bad_input_is_named_in_a_422(serve_app, client):
    server = serve_app()
    bad = {"n": "2", "ratio": "high", "mood": "angry", "tags": "a", "colour": "red"}
    reply = client.post(f"{server.url}/flows/typed", json=bad)
    assert reply.status_code == 422
    problems = {p["input"]: p["message"] for p in reply.json()["inputs"]}
    assert set(problems) == {"n", "ratio", "mood", "tags", "note", "colour"}
    assert "expected an integer, got str" in problems["n"]  # strict: "2" is not an int
    assert "expected a number" in problems["ratio"]
    assert "expected one of happy, sad, got str 'angry'" in problems["mood"]
    assert "expected a list" in problems["tags"]
    assert problems["note"] == "note: missing input"
    assert problems["colour"] == "colour: no such input (inputs: n, ratio, mood, tags, note)"
    assert "flow 'typed'" in reply.json()["error"]


@pytest.mark.parametrize("body, says", [
    (b"{not json", "the body is not valid JSON"),
    (b"[1, 2]", "the body must be a JSON object of the flow's inputs (inputs: n, ratio, mood, tags, note)"),
    (b"", "the body must be a JSON object"),
])
def test_a_body_that_is_not_an_object_of_inputs_is_a_422(serve_app, client, body, says):
    server = serve_app()
    reply = client.post(f"{server.url}/flows/typed", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 422
    assert says in reply.json()["inputs"][0]["message"]
    assert reply.json()["inputs"][0]["input"] is None


def test_strict_inputs_reject_what_lax_validation_would_coerce(serve_app, client):
    server = serve_app()
    for field, value in [("n", 2.5), ("n", True), ("ratio", "1.5"), ("tags", ["a", 1])]:
        reply = client.post(f"{server.url}/flows/typed", json={**GOOD_TYPED, field: value})
        assert reply.status_code == 422, (field, value)
        assert [p["input"] for p in reply.json()["inputs"]] == [field]


def test_what_the_runtime_refuses_in_an_input_is_a_422(serve_app, client):
    server = serve_app('''
    type Point {
      x: int
    }
    flow where(p: Point, label: str) -> int {
      return p.x
    }
    ''')
    assert client.post(f"{server.url}/flows/where", json={"p": {"x": 1}, "label": "a"}).json()["output"] == 1
    reply = client.post(f"{server.url}/flows/where", json={"p": {"x": 1, "y": 2}, "label": "a"})
    assert reply.status_code == 422, reply.text
    assert reply.json()["inputs"] == [{"input": "p", "message": "input 'p': Point has no field 'y' (fields: x)"}]


def test_inputs_may_bear_names_pydantic_keeps_for_itself(serve_app, client):
    server = serve_app('''
    flow odd(copy: str, model_config: int, schema: str, validate: bool) -> str {
      return copy + schema
    }
    ''')
    good = {"copy": "a", "model_config": 1, "schema": "b", "validate": True}
    assert client.post(f"{server.url}/flows/odd", json=good).json()["output"] == "ab"
    bad = client.post(f"{server.url}/flows/odd", json={**good, "model_config": "1"}).json()
    assert [p["input"] for p in bad["inputs"]] == ["model_config"]
    schema = client.get(f"{server.url}/openapi.json").json()["components"]["schemas"]["odd_input"]
    assert list(schema["properties"]) == ["copy", "model_config", "schema", "validate"]


def test_a_failing_flow_is_a_500_with_the_error_text_and_no_traceback(serve_app, client, tmp_path):
    server = serve_app()
    reply = client.post(f"{server.url}/flows/fails", json={"text": "this"})
    assert reply.status_code == 500
    body = reply.json()
    assert "tool 'boom'" in body["error"] and "ValueError: cannot handle 'this'" in body["error"]
    assert "Traceback" not in reply.text and 'File "' not in reply.text
    end = trace_records(tmp_path, body["run_id"])[-1]  # the 500's run id leads to the failed run's trace
    assert end["status"] == "error" and "cannot handle" in end["error"]


def test_an_internal_error_is_named_by_its_type_without_a_traceback(serve_app, client, monkeypatch):
    async def broken(*_args, **_kwargs):
        raise KeyError("no such thing")

    monkeypatch.setattr("fmflow.serve.runs.run_flow", broken)
    server = serve_app()
    reply = client.post(f"{server.url}/flows/hello", json={"q": "x"})
    assert reply.status_code == 500
    assert reply.json()["error"] == "internal error: KeyError: 'no such thing'"
    assert "Traceback" not in reply.text


def test_an_unknown_flow_is_a_404_listing_the_flows(serve_app, client):
    server = serve_app()
    reply = client.post(f"{server.url}/flows/nope", json={})
    assert reply.status_code == 404
    assert "no flow 'nope'" in reply.json()["error"] and "hello" in reply.json()["error"]
    assert client.post(f"{server.url}/flows/nope/stream", json={}).status_code == 404


def test_the_response_cache_works_as_for_fmflow_run(serve_app, client):
    server = serve_app()
    first = client.post(f"{server.url}/flows/recall", json={"q": "same"}).json()["output"]
    again = client.post(f"{server.url}/flows/recall", json={"q": "same"}).json()["output"]
    assert first == again == "first answer"  # temperature 0: the second request is a cache hit
    metrics = client.get(f"{server.url}/metrics").text
    assert metric(metrics, "fmflow_model_calls_total", flow="recall", cache="hit") == 1


def test_without_the_cache_every_request_asks_the_model(serve_app, client):
    server = serve_app(cache=False)
    answers = [client.post(f"{server.url}/flows/recall", json={"q": "same"}).json()["output"] for _ in range(2)]
    assert answers == ["first answer", "second answer"]


# ------------------------------------------------------------------ streaming


def test_streaming_sends_text_deltas_then_the_result(serve_app, client):
    server = serve_app()
    with client.stream("POST", f"{server.url}/flows/hello/stream", json={"q": "one two three"}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = sse_events(reply.read().decode())
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "result" and kinds.count("text") > 1
    text = "".join(data["text"] for kind, data in events if kind == "text")
    result = events[-1][1]
    assert text == result["output"] == "You said one two three"
    assert result["run_id"] == events[0][1]["run_id"] is not None


def test_a_typed_answer_streams_as_one_result(serve_app, client):
    server = serve_app()
    events = sse_events(client.post(f"{server.url}/flows/typed/stream", json=GOOD_TYPED).text)
    assert [kind for kind, _ in events] == ["start", "result"]
    assert events[-1][1]["output"] == {"text": "a,b", "score": 3.0}


def test_a_failing_streamed_run_ends_with_an_error_event(serve_app, client):
    server = serve_app()
    reply = client.post(f"{server.url}/flows/fails/stream", json={"text": "x"})
    events = sse_events(reply.text)
    assert [kind for kind, _ in events] == ["start", "error"]
    assert "cannot handle 'x'" in events[-1][1]["error"] and events[-1][1]["run_id"] == events[0][1]["run_id"]
    assert "Traceback" not in reply.text


def test_a_client_that_leaves_a_stream_cancels_its_run(serve_app, client, tmp_path):
    server = serve_app()
    with client.stream("POST", f"{server.url}/flows/slow/stream", json={"seconds": 30}) as reply:
        first = next(reply.iter_lines())
        assert first == "event: start"
    # The connection is closed with the run still sleeping: the server cancels it and closes its trace.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ends = [json.loads(p.read_text().splitlines()[-1]) for p in (tmp_path / ".fmflow" / "runs").glob("*.jsonl")]
        if ends and ends[0]["type"] == "end":
            break
        time.sleep(0.05)
    assert ends[0]["type"] == "end" and ends[0]["status"] == "cancelled"
    text = client.get(f"{server.url}/metrics").text
    assert metric(text, "fmflow_errors_total", flow="slow", kind="cancelled") == 1


def test_bad_inputs_to_a_stream_are_a_422_before_any_event(serve_app, client):
    server = serve_app()
    reply = client.post(f"{server.url}/flows/typed/stream", json={"n": "x"})
    assert reply.status_code == 422 and reply.headers["content-type"] == "application/json"


def test_a_retried_model_call_tells_the_stream_to_drop_its_text(serve_app, client):
    flaky = '''
    model flaky {
      provider: "replay"
      retry: 1
      options: { responses: [{ error: { status: 503 } }, "steady answer"] }
    }
    prompt ask(q: str) -> str {
      model: flaky
      template: "{{ q }}"
    }
    flow answer(q: str) -> str {
      return ask(q)
    }
    '''
    server = serve_app(flaky)
    events = sse_events(client.post(f"{server.url}/flows/answer/stream", json={"q": "x"}).text)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and "restart" in kinds and kinds[-1] == "result"
    after_restart = kinds[len(kinds) - 1 - kinds[::-1].index("restart"):]
    text = "".join(d["text"] for k, d in events[len(kinds) - len(after_restart):] if k == "text")
    assert text == events[-1][1]["output"] == "steady answer"


# ------------------------------------------------------------------ listing, health, metrics, OpenAPI


def test_flows_lists_every_flow_with_its_input_and_output_schemas(serve_app, client):
    server = serve_app()
    flows = {f["name"]: f for f in client.get(f"{server.url}/flows").json()["flows"]}
    assert set(flows) == {"hello", "typed", "fails", "slow", "paid", "recall"}
    typed = flows["typed"]
    assert typed["path"] == "/flows/typed" and typed["stream"] == "/flows/typed/stream"
    inputs = typed["input_schema"]
    assert inputs["required"] == ["n", "ratio", "mood", "tags", "note"]
    assert inputs["properties"]["n"]["type"] == "integer" and inputs["additionalProperties"] is False
    assert inputs["$defs"]["Mood"]["enum"] == ["happy", "sad"]
    assert typed["output_schema"]["properties"] == {"text": {"type": "string"}, "score": {"type": "number"}}
    assert flows["hello"]["output_schema"] == {"type": "string"}


def test_healthz_answers(serve_app, client):
    server = serve_app()
    assert client.get(f"{server.url}/healthz").json() == {"status": "ok", "flows": 6}


def test_openapi_describes_each_flows_request_and_response(serve_app, client):
    server = serve_app()
    document = client.get(f"{server.url}/openapi.json").json()
    schemas = document["components"]["schemas"]
    for name in ("hello", "typed", "fails", "slow", "paid", "recall"):
        operation = document["paths"][f"/flows/{name}"]["post"]
        request = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        response = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert request == f"#/components/schemas/{name}_input"
        assert response == f"#/components/schemas/{name}_response"
        assert "text/event-stream" in document["paths"][f"/flows/{name}/stream"]["post"]["responses"]["200"]["content"]
    typed_in = schemas["typed_input"]
    assert typed_in["properties"]["mood"] == {"$ref": "#/components/schemas/Mood"}
    assert schemas["Mood"]["enum"] == ["happy", "sad"]
    assert schemas["typed_response"]["properties"]["output"] == {"$ref": "#/components/schemas/Answer"}
    assert set(schemas["Answer"]["properties"]) == {"text", "score"}
    assert "422" in document["paths"]["/flows/typed"]["post"]["responses"]
    assert client.get(f"{server.url}/docs").status_code == 200


def test_metrics_count_requests_latency_tokens_cost_and_errors_by_flow(serve_app, client):
    server = serve_app()
    for _ in range(2):
        assert client.post(f"{server.url}/flows/paid", json={"q": "x"}).status_code == 200
    client.post(f"{server.url}/flows/fails", json={"text": "x"})
    client.post(f"{server.url}/flows/typed", json={"n": "x"})
    client.post(f"{server.url}/flows/hello/stream", json={"q": "x"}).read()
    text = client.get(f"{server.url}/metrics").text
    assert metric(text, "fmflow_requests_total", flow="paid", route="run", outcome="ok") == 2
    assert metric(text, "fmflow_requests_total", flow="fails", route="run", outcome="error") == 1
    assert metric(text, "fmflow_requests_total", flow="typed", route="run", outcome="invalid_input") == 1
    assert metric(text, "fmflow_requests_total", flow="hello", route="stream", outcome="ok") == 1
    assert metric(text, "fmflow_request_duration_seconds_count", flow="paid", route="run") == 2
    assert metric(text, "fmflow_request_duration_seconds_bucket", flow="paid", route="run", le="+Inf") == 2
    assert metric(text, "fmflow_tokens_total", flow="paid", direction="input") == 14
    assert metric(text, "fmflow_tokens_total", flow="paid", direction="output") == 6
    assert metric(text, "fmflow_cost_usd_total", flow="paid") == 0.5
    assert metric(text, "fmflow_errors_total", flow="fails", kind="flow_error") == 1
    assert metric(text, "fmflow_errors_total", flow="typed", kind="invalid_input") == 1
    assert metric(text, "fmflow_requests_in_flight", flow="paid") == 0


def test_each_app_keeps_its_own_metrics(serve_app, client):
    first, second = serve_app(), serve_app()
    client.post(f"{first.url}/flows/hello", json={"q": "x"})
    assert metric(client.get(f"{first.url}/metrics").text, "fmflow_requests_total",
                  flow="hello", route="run", outcome="ok") == 1
    assert metric(client.get(f"{second.url}/metrics").text, "fmflow_requests_total",
                  flow="hello", route="run", outcome="ok") is None


# ------------------------------------------------------------------ auth and limits


def test_with_a_token_every_route_but_healthz_needs_it(serve_app, client):
    server = serve_app(token="s3cret-token")
    assert client.get(f"{server.url}/healthz").status_code == 200
    for method, path in [("GET", "/flows"), ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/docs"),
                         ("POST", "/flows/hello"), ("POST", "/flows/hello/stream"), ("POST", "/flows/nope")]:
        reply = client.request(method, f"{server.url}{path}", json={"q": "x"})
        assert reply.status_code == 401, path
        assert reply.headers["www-authenticate"] == 'Bearer realm="fmflow"'
        assert "missing bearer token" in reply.json()["error"]
    good = {"Authorization": "Bearer s3cret-token"}
    assert client.post(f"{server.url}/flows/hello", json={"q": "x"}, headers=good).status_code == 200
    assert client.get(f"{server.url}/flows", headers={"authorization": "bearer s3cret-token"}).status_code == 200
    text = client.get(f"{server.url}/metrics", headers=good).text
    assert metric(text, "fmflow_rejected_requests_total", reason="unauthorized") == 7


@pytest.mark.parametrize("header", ["Bearer wrong", "Bearer s3cret-token-and-more", "Bearer s3cret-toke",
                                    "Basic s3cret-token", "s3cret-token"])
def test_a_wrong_token_is_refused(serve_app, client, header):
    server = serve_app(token="s3cret-token")
    reply = client.post(f"{server.url}/flows/hello", json={"q": "x"}, headers={"Authorization": header})
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith('Bearer realm="fmflow"')


def test_without_a_token_no_header_is_needed(serve_app, client):
    server = serve_app()
    assert client.get(f"{server.url}/flows").status_code == 200
    assert client.post(f"{server.url}/flows/hello", json={"q": "x"}, headers={"Authorization": "Bearer any"}).json()


def test_a_body_over_the_limit_is_a_413(serve_app, client):
    server = serve_app(max_body=1000)
    assert client.post(f"{server.url}/flows/hello", json={"q": "x" * 900}).status_code == 200
    declared = client.post(f"{server.url}/flows/hello", json={"q": "x" * 2000})
    assert declared.status_code == 413 and "1000 bytes" in declared.json()["error"]

    def chunks():  # no Content-Length: the limit holds while the body streams in
        yield b'{"q": "'
        for _ in range(30):
            yield b"x" * 100
        yield b'"}'

    streamed = client.post(f"{server.url}/flows/hello", content=chunks())
    assert streamed.status_code == 413
    text = client.get(f"{server.url}/metrics").text
    assert metric(text, "fmflow_rejected_requests_total", reason="too_large") == 2


# ------------------------------------------------------------------ several files


def test_flows_of_several_files_are_served_together(tmp_path):
    first = write_flows(tmp_path)
    second = tmp_path / "more.fmflow"
    second.write_text('model m {\n  provider: "replay"\n  options: { echo: true }\n}\n\n'
                      'prompt p(x: str) -> str {\n  model: m\n  template: "{{ x }}"\n}\n\n'
                      'flow extra(x: str) -> str {\n  return p(x)\n}\n', encoding="utf-8")
    catalog = load_catalog(first, second, first)  # a file named twice is served once
    assert "extra" in catalog.flows and len(catalog) == 7


def test_a_flow_name_in_two_files_is_refused(tmp_path):
    first = write_flows(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    second = write_flows(other)
    with pytest.raises(FlowNameClash, match="flow 'hello' is declared in both"):
        load_catalog(first, second)


# ------------------------------------------------------------------ shared model limits


@pytest.fixture
def scripted_replay():
    """The "replay" provider replaced by a ScriptedProvider that counts calls in flight."""
    def make(script, **kwargs) -> ScriptedProvider:
        provider = ScriptedProvider(script, **kwargs)
        register_provider("replay", lambda: provider)
        return provider
    yield make
    register_provider("replay", ReplayProvider)


def test_a_models_concurrency_is_shared_by_all_requests(serve_app, client, scripted_replay):
    async def hold(_config, _request):
        await asyncio.sleep(0.1)

    provider = scripted_replay(["answer"], cycle=True, on_call=hold)
    server = serve_app('''
    model limited {
      provider: "replay"
      concurrency: 2
    }
    prompt ask(q: str) -> str {
      model: limited
      template: "{{ q }}"
    }
    flow answer(q: str) -> str {
      return ask(q)
    }
    ''')
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: client.post(f"{server.url}/flows/answer", json={"q": str(i)}), range(8)))
    assert [r.status_code for r in replies] == [200] * 8
    assert len(provider.requests) == 8
    assert provider.max_in_flight == 2  # eight requests at once, never more than two calls on the model
