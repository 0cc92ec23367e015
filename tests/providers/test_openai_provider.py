"""The openai and ollama providers against a real local HTTP server (fault_server.py).

Each test starts its own server on a free port and stops it at the end; the
provider is called directly (a fresh instance closed with aclose) and through
whole flows loaded from files (the shared instance, closed after every run).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import textwrap
import time

import httpx
import pytest

import fmflow
from fmflow.api import load_program
from fmflow.observe.background import BACKGROUND
from fmflow.providers import (ChatRequest, ModelConfig, ProviderError, ToolSpec, close_providers, get_provider,
                              register_provider)
from fmflow.providers.costs import PRICES, cost_of, price_of
from fmflow.providers.openai import (OLLAMA_BASE_URL, OPENAI_BASE_URL, OllamaProvider, OpenAIProvider,
                                     _retry_after, _wire_message)
from fmflow.runtime import Program, RunOptions, run_flow
from fmflow.runtime.errors import FlowRuntimeError
from fmflow.runtime.transport import call_with_retries, with_timeout

from fault_server import (Reply, chunk, completion, drip, error, gzip_bomb, html_page, malformed,
                          no_content, ok, slow, stream, tool_calls, truncated)

KEY_ENV = "FMFLOW_TEST_KEY"
KEY = "sk-test-very-secret-0123456789"


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    """A fresh shared provider per test (the structured-output memory is per instance), the key set."""
    register_provider("openai", OpenAIProvider)
    register_provider("ollama", OllamaProvider)
    monkeypatch.setenv(KEY_ENV, KEY)
    yield
    register_provider("openai", OpenAIProvider)
    register_provider("ollama", OllamaProvider)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def cfg(server=None, *, provider="openai", model="gpt-4o-mini", **kwargs) -> ModelConfig:
    kwargs.setdefault("api_key_env", KEY_ENV if provider == "openai" else None)
    if server is not None:
        kwargs.setdefault("base_url", server.base_url)
    return ModelConfig(name="m", provider=provider, model=model, **kwargs)


def req(text="hello", **kwargs) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kwargs)


def call(config, *requests, provider=None):
    """Run requests in order on one provider in one event loop; results or raised ProviderErrors."""
    async def go():
        p = provider or (OllamaProvider() if config.provider == "ollama" else OpenAIProvider())
        out = []
        try:
            for r in requests:
                try:
                    out.append(await p.complete(config, r))
                except ProviderError as exc:
                    out.append(exc)
        finally:
            await p.aclose()
        return out
    results = asyncio.run(go())
    return results[0] if len(requests) == 1 else results


# ------------------------------------------------------------ flows

def model_block(base_url: str, extra: str = "", name: str = "m", model: str = "gpt-4o-mini",
                provider: str = "openai") -> str:
    key = f'api_key_env: "{KEY_ENV}", ' if provider == "openai" else ""
    return (f'model {name} {{ provider: "{provider}", name: "{model}", base_url: "{base_url}", {key}'
            f'retry: 2{", " + extra if extra else ""} }}\n')


def load(tmp_path, text: str):
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return fmflow.load(path, workdir=tmp_path, cache=False)


def run(flow, **inputs):
    async def go():
        try:
            return await flow.arun(**inputs)
        finally:
            await close_providers()  # the shared instance's client belongs to this loop
    return asyncio.run(go())


def trace_text(tmp_path) -> str:
    BACKGROUND.flush_all()   # flow.arun leaves its trace to the background writer
    return "".join(p.read_text(encoding="utf-8") for p in sorted((tmp_path / ".fmflow" / "runs").glob("*.jsonl")))


def model_spans(tmp_path) -> list[dict]:
    records = [json.loads(line) for line in trace_text(tmp_path).splitlines()]
    return [r for r in records if r.get("type") == "span" and r.get("kind") == "model"]


ASK = '''
prompt ask(q: str) -> str {
  model: m
  template: "Q: {{ q }}"
}
flow f(q: str) -> str {
  return ask(q)
}
'''


def test_flow_plain_answer_sends_an_openai_request(tmp_path, server):
    server.script(ok("Paris."))
    flow = load(tmp_path, model_block(server.base_url, 'temperature: 0.2, max_tokens: 64, options: { seed: 7 }')
                + ASK)
    assert run(flow, q="capital of France?") == "Paris."
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = request.body
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.2 and body["max_tokens"] == 64
    assert body["seed"] == 7 and "stream" not in body and "response_format" not in body
    assert body["messages"][-1] == {"role": "user", "content": "Q: capital of France?"}


TYPED = '''
type Answer {
  text: str
  confidence: float
}
prompt ask(q: str) -> Answer {
  model: m
  template: "Q: {{ q }}"
}
flow f(q: str) -> Answer {
  return ask(q)
}
'''


def test_flow_typed_output_uses_response_format(tmp_path, server):
    server.script(ok(json.dumps({"text": "hi", "confidence": 0.9})))
    result = run(load(tmp_path, model_block(server.base_url) + TYPED), q="x")
    assert (result.text, result.confidence) == ("hi", 0.9)
    fmt = server.bodies[0]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "ask" and fmt["json_schema"]["strict"] is True
    assert set(fmt["json_schema"]["schema"]["properties"]) == {"text", "confidence"}


def test_flow_400_on_response_format_falls_back_to_prompt_only_and_remembers(tmp_path, server):
    server.reject_response_format = True
    answer = ok(json.dumps({"text": "hi", "confidence": 0.5}))
    server.script(answer, answer)
    flow = load(tmp_path, model_block(server.base_url) + TYPED)
    assert run(flow, q="one").text == "hi"
    assert ["response_format" in b for b in server.bodies] == [True, False]
    assert "JSON" in server.bodies[1]["messages"][-1]["content"]  # the prompt itself asks for JSON
    assert run(flow, q="two").confidence == 0.5  # a new run (loop), the same provider: skips it at once
    assert ["response_format" in b for b in server.bodies] == [True, False, False]
    assert [s["retries"] for s in model_spans(tmp_path)] == [0, 0]  # the fallback is no failed attempt


def test_a_400_not_about_response_format_is_not_remembered_when_the_retry_fails_too(server):
    server.script(error(400, "context too long"), error(400, "context too long"), ok("{}"))
    config = cfg(server)
    schema = {"type": "object", "properties": {}}
    first, second = call(config, req(json_schema=schema), req(json_schema=schema))
    assert isinstance(first, ProviderError) and not first.retryable and "context too long" in str(first)
    assert ["response_format" in b for b in server.bodies] == [True, False, True]


AGENT_TOOLS = '''
def word_count(text):
    return len(text.split())
'''


def test_flow_agent_tool_calls_round_trip_in_openai_wire_format(tmp_path, server):
    (tmp_path / "openai_agent_tools.py").write_text(AGENT_TOOLS, encoding="utf-8")
    server.script(tool_calls(("word_count", {"text": "one two three"})), ok("There are 3 words."))
    flow = load(tmp_path, model_block(server.base_url) + '''
        tool word_count(text: str) -> int = python("openai_agent_tools:word_count")
        agent counter(question: str) -> str {
          model: m
          tools: [word_count]
          max_steps: 3
          template: "Answer: {{ question }}"
        }
        flow f(question: str) -> str {
          return counter(question)
        }
    ''')
    assert run(flow, question="how many words?") == "There are 3 words."
    first, second = server.bodies
    assert first["tools"][0]["type"] == "function"
    assert first["tools"][0]["function"]["name"] == "word_count"
    assert first["tools"][0]["function"]["parameters"]["properties"]["text"] == {"type": "string"}
    assistant, tool = second["messages"][-2:]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "word_count", "arguments": json.dumps({"text": "one two three"})}}]
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": "3"}


def test_flow_usage_and_cost_in_the_trace_and_no_key(tmp_path, server):
    server.script(ok("a", usage=(1000, 500)))
    run(load(tmp_path, model_block(server.base_url) + ASK), q="x")
    [span] = model_spans(tmp_path)
    assert (span["tokens_in"], span["tokens_out"]) == (1000, 500)
    assert span["cost"] == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6)
    assert KEY not in trace_text(tmp_path)


def test_flow_cost_option_overrides_the_table_and_is_not_sent(tmp_path, server):
    server.script(ok("a", model="my-local-model", usage=(1000, 500)))
    flow = load(tmp_path, model_block(server.base_url, "options: { cost: { input: 1.0, output: 2.0 } }",
                                      model="my-local-model") + ASK)
    run(flow, q="x")
    assert "cost" not in server.bodies[0]
    assert model_spans(tmp_path)[0]["cost"] == pytest.approx(0.002)


def test_flow_429_then_success_honours_retry_after(tmp_path, server):
    server.script(error(429, "slow down", retry_after="0.3"), ok("done"))
    assert run(load(tmp_path, model_block(server.base_url) + ASK), q="x") == "done"
    first, second = server.requests
    assert second.at - first.at >= 0.3
    [span] = model_spans(tmp_path)
    [attempt] = span["attempts"]
    assert attempt["status"] == 429 and attempt["waited"] >= 0.3 and "slow down" in attempt["error"]


def test_flow_401_fails_at_once_naming_the_variable(tmp_path, server):
    server.script(error(401, f"Incorrect API key provided: {KEY[:8]}…"))
    with pytest.raises(FlowRuntimeError) as exc:
        run(load(tmp_path, model_block(server.base_url) + ASK), q="x")
    message = str(exc.value)
    assert "refused (401)" in message and KEY_ENV in message and KEY[:8] not in message
    assert len(server.requests) == 1  # not retried
    assert KEY not in trace_text(tmp_path)


def test_flow_missing_key_is_named_before_any_request(tmp_path, server, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(FlowRuntimeError) as exc:
        run(load(tmp_path, model_block(server.base_url) + ASK), q="x")
    assert f"environment variable {KEY_ENV} is not set (model 'm' needs it" in str(exc.value)
    assert server.requests == []


def test_flow_connection_refused_is_retried_then_falls_back(tmp_path, server):
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    server.script(ok("from backup"))
    flow = load(tmp_path, model_block(dead, "fallback: [backup]") + model_block(server.base_url, name="backup")
                + ASK)
    assert run(flow, q="x") == "from backup"
    failed, answered = model_spans(tmp_path)
    assert failed["name"] == "m" and len(failed["attempts"]) == 3  # retry: 2
    assert all(f"could not reach {dead}" in a["error"] for a in failed["attempts"])
    assert answered["name"] == "backup" and len(server.requests) == 1


def test_flow_malformed_json_counts_as_a_failed_attempt(tmp_path, server):
    server.script(malformed(), ok("fine"))
    assert run(load(tmp_path, model_block(server.base_url) + ASK), q="x") == "fine"
    [span] = model_spans(tmp_path)
    assert len(span["attempts"]) == 1 and "not JSON" in span["attempts"][0]["error"]


def stream_run(tmp_path, text: str, **inputs) -> tuple[object, list[str]]:
    """A run with a listener on the final answer, as `fmflow run` streams it."""
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    loader, ctx = load_program(str(path))
    pieces: list[str] = []
    options = RunOptions(cache=False, workdir=str(tmp_path), on_text=pieces.append)

    async def go():
        try:
            return await run_flow(Program(loader, ctx), None, inputs, options)
        finally:
            await close_providers()
    return asyncio.run(go()), pieces


def test_flow_streams_the_answer_in_order(tmp_path, server):
    server.script(stream(["The ", "answer ", "is 42."], usage=(12, 4)))
    result, pieces = stream_run(tmp_path, model_block(server.base_url) + ASK, q="x")
    assert result.value == "The answer is 42." and pieces == ["The ", "answer ", "is 42."]
    assert server.bodies[0]["stream"] is True
    [span] = model_spans(tmp_path)
    assert (span["tokens_in"], span["tokens_out"]) == (12, 4)


def test_flow_truncated_stream_counts_as_a_failed_attempt(tmp_path, server):
    server.script(truncated(["cut ", "short"]), stream(["whole answer"]))
    result, pieces = stream_run(tmp_path, model_block(server.base_url) + ASK, q="x")
    assert result.value == "whole answer"
    assert pieces[-1] == "whole answer"  # the cut attempt's pieces were shown before it failed
    [span] = model_spans(tmp_path)
    [attempt] = span["attempts"]
    assert "truncated stream" in attempt["error"] and len(server.requests) == 2


def test_flow_ollama_sends_no_authorization(tmp_path, server):
    server.script(ok("local"))
    assert run(load(tmp_path, model_block(server.base_url, provider="ollama", model="llama3.2") + ASK), q="x") \
        == "local"
    assert "authorization" not in server.requests[0].headers


# ------------------------------------------------------------ the provider directly

def test_streaming_calls_on_text_in_order(server):
    server.script(stream(["Hel", "lo", " world"], usage=(7, 3)))
    pieces: list[str] = []
    response = call(cfg(server), req(on_text=pieces.append))
    assert pieces == ["Hel", "lo", " world"]
    assert (response.text, response.tokens_in, response.tokens_out) == ("Hello world", 7, 3)
    body = server.bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_streamed_tool_calls_accumulate_by_index(server):
    events = [chunk({"role": "assistant", "content": None, "tool_calls": [
                  {"index": 0, "id": "c0", "type": "function", "function": {"name": "lookup", "arguments": ""}},
                  {"index": 1, "id": "c1", "type": "function", "function": {"name": "count", "arguments": '{"te'}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"key": '}}]}),
              chunk({"tool_calls": [{"index": 1, "function": {"arguments": 'xt": "a b"}'}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"k1"}'}}]}),
              chunk(None, usage=(4, 2))]
    server.script(Reply(events=events))
    response = call(cfg(server), req(on_text=lambda _: None))
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == \
        [("c0", "lookup", {"key": "k1"}), ("c1", "count", {"text": "a b"})]
    assert response.tokens_out == 2


@pytest.mark.parametrize("reply, words", [
    (truncated(["par", "tial"]), "truncated stream"),
    (Reply(events=[chunk({"content": "a"}), "{not json"]), "malformed stream chunk"),
    (stream(["a"], done=False, drop=True), "could not reach"),  # cut mid-body
])
def test_broken_streams_are_retryable_failed_attempts(server, reply, words):
    server.script(reply, stream(["fine"]))
    provider, config = OpenAIProvider(), cfg(server)

    async def go():
        try:
            attempt = lambda: provider.complete(config, req(on_text=lambda _: None))  # noqa: E731
            return await call_with_retries(attempt, retries=2, timeout=None, sleep=lambda _s: asyncio.sleep(0))
        finally:
            await provider.aclose()

    response, attempts = asyncio.run(go())
    assert response.text == "fine"
    assert len(attempts) == 1 and words in attempts[0]["error"] and server.base_url in attempts[0]["error"]


@pytest.mark.parametrize("reply, status, retryable", [
    (error(500, "boom"), 500, True),
    (error(503, "overloaded"), 503, True),
    (error(408, "timeout"), 408, True),
    (error(403, "forbidden"), 403, False),
    (error(404, "no such model"), 404, False),
    (error(422, "x" * 1000), 422, False),
])
def test_http_errors(server, reply, status, retryable):
    server.script(reply)
    exc = call(cfg(server), req())
    assert isinstance(exc, ProviderError)
    assert (exc.status, exc.retryable) == (status, retryable)
    assert len(str(exc)) < 400 and KEY not in str(exc)
    if status == 403:
        assert str(exc) == f"{server.base_url} was refused (403): check the environment variable {KEY_ENV}"


def test_429_retry_after_as_http_date(server):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.script(error(429, "later", retry_after=when))
    exc = call(cfg(server), req())
    assert exc.retryable and exc.status == 429 and 25 <= exc.retry_after <= 31


def test_retry_after_parsing():
    assert _retry_after("2") == 2.0 and _retry_after("0.5") == 0.5 and _retry_after("-3") == 0.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    assert _retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


def test_slow_server_hits_the_runtime_timeout(server):
    server.script(slow(5.0))
    provider, config = OpenAIProvider(), cfg(server)

    async def go():
        try:
            return await with_timeout(provider.complete(config, req()), 0.2)
        finally:
            await provider.aclose()

    started = time.monotonic()
    with pytest.raises(ProviderError) as exc:
        asyncio.run(go())
    assert exc.value.retryable and time.monotonic() - started < 2


def test_connection_refused_names_the_base_url():
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    exc = call(cfg(base_url=base_url), req())
    assert exc.retryable and f"could not reach {base_url}" in str(exc)


@pytest.mark.parametrize("reply, words", [
    (Reply(json={"object": "chat.completion"}), "without choices"),
    (Reply(json={"choices": []}), "without choices"),
    (Reply(json={"choices": "none"}), "without choices"),
    (Reply(json={"choices": [{"index": 0, "finish_reason": "stop"}]}), "a choice without a message"),
    (Reply(json=[completion("hi")]), "JSON that is not an object"),
    (Reply(json="hi"), "JSON that is not an object"),
    (Reply(json={"error": {"message": "upstream overloaded"}}), "answered with an error: upstream overloaded"),
    (no_content(), "the model returned no content (content: null, no tool calls, finish_reason: stop)"),
    (no_content(finish_reason="length"), "the model returned no content"),
    (Reply(json=completion(None, usage=None) | {"choices": [{"message": {"role": "assistant"}}]}),
     "the model returned no content"),
    (Reply(events=[chunk({"role": "assistant"}), chunk(None, usage=(3, 0))]), "the model returned no content"),
    (Reply(raw="[" * 100_000 + "]" * 100_000), "JSON nested too deeply"),
])
def test_replies_without_an_answer_are_retryable_failed_attempts(server, reply, words):
    server.script(reply)
    streaming = reply.events is not None
    exc = call(cfg(server), req(on_text=(lambda _t: None) if streaming else None))
    assert isinstance(exc, ProviderError), exc
    assert exc.retryable and words in str(exc) and server.base_url in str(exc)


@pytest.mark.parametrize("reply, words", [
    (no_content(finish_reason="content_filter"), "content filter withheld the reply"),
    (Reply(json=completion("partial", usage=None) | {"choices": [{"message": {"content": "partial"},
                                                                   "finish_reason": "content_filter"}]}),
     "content filter withheld the reply"),
    (Reply(events=[chunk({"content": "par"}), json.dumps({"choices": [{"index": 0, "delta": {},
                                                                       "finish_reason": "content_filter"}]})]),
     "content filter withheld the reply"),
    (no_content(refusal="I can't help with that."), "the model refused: I can't help with that."),
    (html_page(), "answered with an HTML page titled 'Sign in', not JSON: check base_url"),
])
def test_replies_that_trying_again_would_not_fix_fail_at_once(server, reply, words):
    server.script(reply)
    streaming = reply.events is not None
    exc = call(cfg(server), req(on_text=(lambda _t: None) if streaming else None))
    assert isinstance(exc, ProviderError), exc
    assert not exc.retryable and words in str(exc)


def test_an_html_page_to_a_stream_request_is_named_too(server):
    server.script(html_page())
    exc = call(cfg(server), req(on_text=lambda _t: None))
    assert isinstance(exc, ProviderError) and "HTML page" in str(exc) and not exc.retryable


def test_empty_content_is_an_answer_not_a_failure(server):
    server.script(ok(""), stream([]))
    plain, streamed = call(cfg(server), req(), req(on_text=lambda _t: None))
    assert (plain.text, streamed.text) == ("", "")


# ------------------------------------------------------------ size and time limits

def test_a_gzip_bomb_stops_at_the_size_limit_without_decoding_it_all(server):
    import tracemalloc

    server.script(gzip_bomb(300), ok("never asked"))  # 300 KB on the wire, 300 MB decoded
    tracemalloc.start()
    try:
        exc = call(cfg(server), req())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(exc, ProviderError) and not exc.retryable
    assert "larger than 32 MB once decoded" in str(exc)
    assert peak < 48 * 1024 * 1024, f"peak {peak / 2**20:.0f} MB"
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


def test_a_streamed_gzip_bomb_stops_at_the_size_limit(server):
    server.script(gzip_bomb(300, stream=True))
    exc = call(cfg(server), req(on_text=lambda _t: None))
    assert isinstance(exc, ProviderError) and not exc.retryable and "larger than 32 MB" in str(exc)


def test_a_stream_of_many_small_events_is_capped_in_total(server, monkeypatch):
    import fmflow.providers.openai as openai_module

    monkeypatch.setattr(openai_module, "MAX_REPLY_BYTES", 4096)
    server.script(stream(["x" * 100] * 100))
    exc = call(cfg(server), req(on_text=lambda _t: None))
    assert isinstance(exc, ProviderError) and "larger than 4096 bytes" in str(exc)


def test_an_error_reply_is_read_only_far_enough_for_its_message(server):
    server.script(gzip_bomb(300, status=503))
    exc = call(cfg(server), req())
    assert isinstance(exc, ProviderError) and exc.status == 503 and exc.retryable
    assert len(str(exc)) < 400


def test_a_deflate_reply_is_decoded(server):
    import zlib

    body = json.dumps(completion("deflated")).encode()
    for packed in (zlib.compress(body), zlib.compress(body)[2:-4]):  # zlib-wrapped, and raw as some servers send
        server.script(Reply(gzip=packed, headers={"Content-Encoding": "deflate"}))
    assert [r.text for r in call(cfg(server), req(), req())] == ["deflated", "deflated"]


def test_the_provider_bounds_a_call_by_the_models_timeout_without_the_runtime(server):
    # Called directly, not through the runtime's with_timeout: the provider's own deadline holds.
    server.script(slow(5.0))
    started = time.monotonic()
    exc = call(cfg(server, timeout=0.3), req())
    assert isinstance(exc, ProviderError) and exc.retryable
    assert time.monotonic() - started < 3


def test_a_dripping_reply_is_bounded_by_the_total_deadline(server):
    # One byte every 50 ms: no read ever waits long, only the whole reply is late.
    server.script(drip(0.05))
    exc = call(cfg(server, timeout=0.5), req())
    assert isinstance(exc, ProviderError) and exc.retryable
    assert "gave no complete reply within 0.5s" in str(exc)


def test_a_dripping_stream_is_bounded_by_the_total_deadline(server):
    server.script(Reply(events=[chunk({"content": "."})] * 200, drip=0.05))
    pieces: list[str] = []
    exc = call(cfg(server, timeout=0.5), req(on_text=pieces.append))
    assert isinstance(exc, ProviderError) and "within 0.5s" in str(exc)
    assert 0 < len(pieces) < 200


def test_malformed_tool_arguments_are_retryable(server):
    wire = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": '}}]
    server.script(Reply(json={"model": "x", "choices": [{"message": {"content": None, "tool_calls": wire}}]}))
    exc = call(cfg(server), req())
    assert isinstance(exc, ProviderError) and exc.retryable and "tool call 'f'" in str(exc)


def test_tools_and_options_in_the_body(server):
    tools = [ToolSpec("lookup", "tool lookup", {"type": "object", "properties": {"key": {"type": "string"}}})]
    config = cfg(server, options={"top_p": 0.5, "cost": {"input": 1, "output": 1}, "model": "not-this"})
    call(config, req(tools=tools, temperature=0.0, max_tokens=10))
    body = server.bodies[0]
    assert body["tools"] == [{"type": "function", "function": {"name": "lookup", "description": "tool lookup",
                                                               "parameters": tools[0].parameters}}]
    assert body["top_p"] == 0.5 and body["model"] == "gpt-4o-mini" and "cost" not in body
    assert body["temperature"] == 0.0 and body["max_tokens"] == 10


def test_reasoning_models_get_max_completion_tokens(server):
    call(cfg(server, model="o4-mini"), req(max_tokens=10))
    assert server.bodies[0]["max_completion_tokens"] == 10 and "max_tokens" not in server.bodies[0]


def test_one_pooled_client_per_loop_and_base_url(server):
    provider, config = OpenAIProvider(), cfg(server)
    call(config, req(), req(), req(), provider=provider)
    assert len({r.client_port for r in server.requests}) == 1  # one kept-alive connection
    assert len(provider._clients) == 0  # aclose() let go of this loop's clients

    async def clients():
        try:
            return provider._client(server.base_url), provider._client(server.base_url), provider._client("http://x")
        finally:
            await provider.aclose()
    a, b, c = asyncio.run(clients())
    assert a is b and a is not c and a.is_closed and c.is_closed


def test_missing_default_key_names_openai_api_key(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    exc = call(cfg(server, api_key_env=None), req())
    assert "environment variable OPENAI_API_KEY is not set" in str(exc) and not exc.retryable
    assert server.requests == []


def test_ollama_defaults(monkeypatch):
    assert isinstance(get_provider("ollama"), OllamaProvider) and isinstance(get_provider("openai"), OpenAIProvider)
    assert (OllamaProvider.default_base_url, OllamaProvider.default_key_env) == \
        (OLLAMA_BASE_URL, None) == ("http://localhost:11434/v1", None)
    assert (OpenAIProvider.default_base_url, OpenAIProvider.default_key_env) == \
        (OPENAI_BASE_URL, "OPENAI_API_KEY") == ("https://api.openai.com/v1", "OPENAI_API_KEY")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"model": "llama3.2", "choices": [{"message": {"content": "hi"}}]})

    provider = OllamaProvider()
    monkeypatch.setattr(provider, "_client", lambda _url: httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    response = call(cfg(provider="ollama", model="llama3.2"), req(), provider=provider)
    assert response.text == "hi" and response.cost is None and response.tokens_in is None
    assert str(seen[0].url) == "http://localhost:11434/v1/chat/completions"
    assert "authorization" not in seen[0].headers


def test_wire_messages():
    assert _wire_message({"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "name": "f", "arguments": {"x": 1}}]}) == {
        "role": "assistant", "content": "",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]}
    assert _wire_message({"role": "tool", "tool_call_id": "c1", "name": "f", "content": "2"}) == \
        {"role": "tool", "tool_call_id": "c1", "content": "2"}
    assert _wire_message({"role": "user", "content": "hi"}) == {"role": "user", "content": "hi"}


# ------------------------------------------------------------ costs

def test_price_table_matches_exact_names_and_longest_prefix():
    assert price_of("gpt-4o-mini") == PRICES["gpt-4o-mini"]
    assert price_of("gpt-4o-mini-2024-07-18") == PRICES["gpt-4o-mini"]
    assert price_of("gpt-4o-2024-08-06") == PRICES["gpt-4o"]
    assert price_of("gpt-4.1-nano-2025-04-14") == PRICES["gpt-4.1-nano"]
    assert price_of("gpt-4o-2024-05-13") == (5.00, 15.00)
    assert price_of("gpt-4-0613") == PRICES["gpt-4"]
    assert price_of("gpt-4oz") is None and price_of("llama3.2") is None and price_of(None) is None


def test_cost_of():
    assert cost_of({}, ["gpt-4o-mini"], 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert cost_of({}, ["local", "gpt-4o-mini-2024-07-18"], 1_000_000, 0) == pytest.approx(0.15)
    assert cost_of({}, ["local"], 10, 10) is None and cost_of({}, ["gpt-4o"], None, None) is None
    assert cost_of({"cost": {"input": 1, "output": 3}}, ["gpt-4o"], 500_000, 0) == pytest.approx(0.5)


def test_bad_cost_option_is_a_clear_error(server):
    exc = call(cfg(server, options={"cost": {"input": "cheap", "output": 1}}), req())
    assert isinstance(exc, ProviderError) and "options.cost" in str(exc) and not exc.retryable


def test_lone_surrogates_in_replies_become_replacement_characters(server):
    wire = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"text": "x\\udce9"}'}}]
    server.script(Reply(raw=json.dumps(completion("caf\udce9"))), Reply(json=completion(None, tool_calls=wire)),
                  stream(["a\udce9", "b"]))
    pieces: list[str] = []
    plain, calls, streamed = call(cfg(server), req(), req(), req(on_text=pieces.append))
    assert plain.text == "caf\ufffd" and calls.tool_calls[0].arguments == {"text": "x\ufffd"}
    assert streamed.text == "a\ufffdb" and pieces == ["a\ufffd", "b"]
