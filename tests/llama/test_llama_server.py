"""Flows through the `openai` provider against a real llama.cpp llama-server.

The model has random weights (tiny_model.py), so nothing here looks at what
it says: the tests assert on the protocol (request bodies, headers, the
stream's end), on structure (types, validated JSON) and on counts (tokens,
requests, requests in flight), never on wording or wall-clock time.
"""

from __future__ import annotations

import asyncio
import json
import textwrap

import httpx
import pytest

import fmflow
from fmflow.providers import ChatRequest, ModelConfig, close_providers, get_provider

KEY_ENV = "LLAMA_KEY"  # conftest's llama_env fixture sets it and returns the key


def write_flow(tmp_path, text: str):
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path, text: str, **kwargs):
    kwargs.setdefault("workdir", tmp_path)
    kwargs.setdefault("cache", False)  # every call must reach the server
    return fmflow.load(write_flow(tmp_path, text), **kwargs)


def model_block(base_url: str, *extra: str, provider: str = "openai", max_tokens: int = 16) -> str:
    entries = [f'provider: "{provider}"', 'name: "tiny"', f'base_url: "{base_url}"',
               f"max_tokens: {max_tokens}", "temperature: 0", "timeout: 30s", *extra]
    if provider == "openai":
        entries.append(f'api_key_env: "{KEY_ENV}"')
    return "model m { " + ", ".join(entries) + " }"


def spans(flow, kind: str) -> list[dict]:
    with open(flow.last_run.trace_path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    return [r for r in records if r["type"] == "span" and r["kind"] == kind]


# --------------------------------------------------------------- the server


def test_server_speaks_the_chat_completions_protocol(llama_server):
    """The fixture's server itself: a plain reply with usage, and a stream ending in [DONE]."""
    body = {"model": llama_server.model, "messages": [{"role": "user", "content": "Say hello"}],
            "max_tokens": 8, "temperature": 0}
    reply = httpx.post(f"{llama_server.base_url}/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert isinstance(data["choices"][0]["message"]["content"], str)
    assert data["usage"]["prompt_tokens"] > 0 and data["usage"]["completion_tokens"] > 0

    events = []
    with httpx.stream("POST", f"{llama_server.base_url}/chat/completions",
                      json={**body, "stream": True}, timeout=30) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("data:"):
                events.append(line[5:].strip())
    assert events and events[-1] == "[DONE]"
    assert all("choices" in json.loads(e) for e in events[:-1])


# ------------------------------------------------------------- plain answers

PLAIN = """
    {model}
    prompt greet(name: str) -> str {{
      model: m
      system: "You are a helpful assistant."
      template: "Say hello to {{{{ name }}}}."
    }}
    flow hello(name: str) -> str {{
      return greet(name: name)
    }}
"""


def test_plain_str_answer_with_tokens_in_the_trace(tmp_path, llama_server, llama_env):
    # ignore_eos (a llama.cpp extra, passed through `options`) makes the reply
    # exactly max_tokens long, so the random model cannot answer with nothing.
    flow = load(tmp_path, PLAIN.format(model=model_block(llama_server.base_url,
                                                          "options: { ignore_eos: true }", max_tokens=12)))
    for _ in range(2):  # two runs, two event loops: the provider's pooled client must not leak across
        text = flow.run(name="Ada")
        assert isinstance(text, str) and text.strip()
        [call] = spans(flow, "model")
        assert call["error"] is None and call["provider"] == "openai" and call["model"] == "tiny"
        assert call["tokens_in"] > 0
        assert call["tokens_out"] == 12
        assert call["retries"] == 0 and call["cache_hit"] is False
        assert call["output"].strip() == text  # the runtime strips a `-> str` reply


def test_ollama_provider_needs_no_key(tmp_path, llama_server, monkeypatch):
    """`provider: "ollama"` speaks the same protocol and sends no key unless told to."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    flow = load(tmp_path, PLAIN.format(model=model_block(llama_server.base_url, provider="ollama")))
    assert isinstance(flow.run(name="Ada"), str)
    [call] = spans(flow, "model")
    assert call["error"] is None and call["provider"] == "ollama" and call["tokens_in"] > 0


def test_request_on_the_wire(tmp_path, llama_server, llama_env, recording_proxy):
    proxy = recording_proxy()
    flow = load(tmp_path, PLAIN.format(model=model_block(proxy.base_url, max_tokens=7)))
    flow.run(name="Ada")
    [request] = proxy.chat_requests()
    assert request.method == "POST" and request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {llama_env}"
    assert request.status == 200
    body = request.body
    assert body["model"] == "tiny" and body["max_tokens"] == 7 and body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "Ada" in body["messages"][1]["content"]
    assert "stream" not in body and "response_format" not in body


# ----------------------------------------------------------------- streaming


def test_streaming_on_text(llama_server, llama_env):
    config = ModelConfig(name="m", provider="openai", model="tiny", base_url=llama_server.base_url,
                         api_key_env=KEY_ENV, max_tokens=10, temperature=0.0, options={"ignore_eos": True})
    chunks: list[str] = []

    async def main():
        try:
            request = ChatRequest(messages=[{"role": "user", "content": "Tell me a story."}],
                                  temperature=0.0, max_tokens=10, options=dict(config.options),
                                  on_text=chunks.append)
            return await asyncio.wait_for(get_provider("openai").complete(config, request), 30)
        finally:
            await close_providers()

    response = asyncio.run(main())
    assert len(chunks) >= 2                      # pieces, not one block at the end
    assert all(isinstance(c, str) and c for c in chunks)
    assert "".join(chunks) == response.text      # the stream ended at [DONE] and nothing was lost
    assert response.tokens_in > 0 and response.tokens_out == 10  # usage from the stream's last chunk
    assert response.model


# No prompt cache: the second request recomputes the whole prompt exactly as
# the first did, so near-tied logits of the random weights cannot tip greedy
# decoding another way.
SAME_PATH = {"seed": 1, "cache_prompt": False}


def test_streamed_and_plain_replies_agree(llama_server, llama_env):
    """Greedy decoding: the same request streamed and not gives the same text."""
    config = ModelConfig(name="m", provider="openai", model="tiny", base_url=llama_server.base_url,
                         api_key_env=KEY_ENV, max_tokens=10, temperature=0.0)

    async def main():
        provider = get_provider("openai")
        try:
            messages = [{"role": "user", "content": "What is the capital of France?"}]
            plain = await provider.complete(config, ChatRequest(messages=messages, temperature=0.0,
                                                                 max_tokens=10, options=SAME_PATH))
            chunks: list[str] = []
            streamed = await provider.complete(config, ChatRequest(messages=messages, temperature=0.0,
                                                                    max_tokens=10, options=SAME_PATH,
                                                                    on_text=chunks.append))
            return plain, streamed, chunks
        finally:
            await close_providers()

    plain, streamed, chunks = asyncio.run(main())
    assert streamed.text == plain.text == "".join(chunks)
    assert (streamed.tokens_in, streamed.tokens_out) == (plain.tokens_in, plain.tokens_out)


# --------------------------------------------------------- structured output

STRUCTURED = """
    {model}
    enum Size {{ small, large }}
    type Verdict {{
      ok: bool
      size: Size
    }}
    prompt judge(q: str) -> Verdict {{
      model: m
      template: "Is this fine? {{{{ q }}}}"
    }}
    flow check_it(q: str) -> Verdict {{
      return judge(q: q)
    }}
"""


def test_json_schema_output_parses_and_validates(tmp_path, llama_server, llama_env, recording_proxy):
    proxy = recording_proxy()
    flow = load(tmp_path, STRUCTURED.format(model=model_block(proxy.base_url, max_tokens=64)))
    verdict = flow.run(q="a spider with eight legs")
    assert isinstance(verdict.ok, bool)
    assert verdict.size in ("small", "large")
    # One request, answered with grammar-constrained JSON: no reask, no prompt-only fallback.
    [request] = proxy.chat_requests()
    assert request.status == 200
    fmt = request.body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "judge"
    assert set(fmt["json_schema"]["schema"]["properties"]) == {"ok", "size"}
    raw = json.loads(json.loads(request.response)["choices"][0]["message"]["content"])
    assert set(raw) == {"ok", "size"}
    assert raw["ok"] == verdict.ok and raw["size"] == verdict.size
    [call] = spans(flow, "model")
    assert call["error"] is None and call["tokens_in"] > 0 and call["tokens_out"] > 0


# ------------------------------------------------------- concurrency and rate

MANY = """
    {model}
    prompt count(i: int) -> str {{
      model: m
      template: "Count to {{{{ i }}}}."
    }}
    flow many(n: int) -> list[str] {{
      return [count(i: i) for i in range(n)]
    }}
"""


@pytest.mark.parametrize("concurrency", [2, 4])
def test_concurrency_is_the_most_requests_in_flight(tmp_path, llama_server, llama_env, recording_proxy,
                                                    concurrency):
    # The proxy holds each request 0.3 s, so calls that fmflow lets run
    # together are surely in flight together; the server has 4 slots.
    proxy = recording_proxy(hold=0.3)
    flow = load(tmp_path, MANY.format(model=model_block(proxy.base_url, f"concurrency: {concurrency}",
                                                         max_tokens=4)))
    replies = flow.run(n=6)
    assert len(replies) == 6 and all(isinstance(r, str) for r in replies)
    requests = proxy.chat_requests()
    assert len(requests) == 6 and all(r.status == 200 for r in requests)
    assert proxy.max_in_flight == concurrency
    # Each item was asked once, and the results keep source order whatever order the replies came in.
    answers = {r.body["messages"][-1]["content"]: json.loads(r.response)["choices"][0]["message"]["content"]
               for r in requests}
    assert sorted(answers) == sorted(f"Count to {i}." for i in range(6))
    assert replies == [answers[f"Count to {i}."].strip() for i in range(6)]
    assert len(spans(flow, "model")) == 6


def test_rate_limits_requests_in_flight(tmp_path, llama_server, llama_env, recording_proxy):
    # `rate: 2/s` and no concurrency limit: the first two of four calls go at
    # once (held 0.3 s, they overlap), the other two wait for the window. The
    # rate bounds when requests start, not how long the server takes: no three
    # of them arrive within one second (less transport jitter; unlimited, all
    # four would arrive within milliseconds).
    proxy = recording_proxy(hold=0.3)
    flow = load(tmp_path, MANY.format(model=model_block(proxy.base_url, "rate: 2/s", max_tokens=4)))
    replies = flow.run(n=4)
    assert len(replies) == 4
    arrivals = sorted(r.arrived for r in proxy.chat_requests())
    assert len(arrivals) == 4
    assert proxy.max_in_flight >= 2
    assert all(later - first >= 0.75 for first, later in zip(arrivals, arrivals[2:]))
