"""The replay provider (flow-file scripted/recorded answers) and ScriptedProvider (Python tests)."""

from __future__ import annotations

import asyncio
import json

import pytest

from fmflow.providers import ChatRequest, ChatResponse, ModelConfig, ProviderError, get_provider, register_provider
from fmflow.providers.replay import ReplayProvider, ScriptedProvider


def cfg(name="m", source="/flows/app.fmflow", **options) -> ModelConfig:
    return ModelConfig(name=name, provider="replay", options=options, source=source)


def req(*contents: str) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": c} for c in contents])


def run(coro):
    return asyncio.run(coro)


def test_registered_as_replay():
    assert isinstance(get_provider("replay"), ReplayProvider)


def test_responses_in_order_then_exhausted():
    p, c = ReplayProvider(), cfg(responses=["one", {"text": "two words"}])
    assert run(p.complete(c, req("hi there"))).text == "one"
    second = run(p.complete(c, req("hi there")))  # positions survive across runs (event loops)
    assert (second.text, second.tokens_in, second.tokens_out) == ("two words", 2, 2)
    with pytest.raises(ProviderError) as exc:
        run(p.complete(c, req("x")))
    assert str(exc.value) == "replay model 'm' has no more responses (2 given)"
    assert not exc.value.retryable


def test_positions_are_per_declaration_and_resettable():
    p = ReplayProvider()
    a, b = cfg("a", responses=["a1", "a2"]), cfg("b", responses=["b1"])
    same_name_other_file = cfg("a", source="/other.fmflow", responses=["z1"])

    async def go():
        return [(await p.complete(c, req("q"))).text for c in (a, b, a, same_name_other_file)]

    assert run(go()) == ["a1", "b1", "a2", "z1"]
    p.reset(a.key)
    assert run(p.complete(a, req("q"))).text == "a1"


def test_concurrent_calls_get_distinct_items():
    p, c = ReplayProvider(), cfg(responses=[str(i) for i in range(20)])

    async def go():
        return await asyncio.gather(*(p.complete(c, req("q")) for _ in range(20)))

    assert sorted(int(r.text) for r in run(go())) == list(range(20))


def test_cycle_repeats():
    p, c = ReplayProvider(), cfg(responses=["a", "b"], cycle=True)

    async def go():
        return [(await p.complete(c, req("q"))).text for _ in range(5)]

    assert run(go()) == ["a", "b", "a", "b", "a"]


@pytest.mark.parametrize("error, retryable, status", [
    ({"status": 429, "message": "slow down", "retry_after": 2}, True, 429),
    ({"status": 503}, True, 503),
    ({"status": 500}, True, 500),
    ({"status": 408}, True, 408),
    ({"kind": "timeout"}, True, None),
    ({"kind": "connection"}, True, None),
    ({"status": 401, "message": "bad key"}, False, 401),
    ({"status": 400}, False, 400),
    ({"status": 404, "retryable": True}, True, 404),  # explicit override wins
    ("boom", False, None),
])
def test_scripted_errors(error, retryable, status):
    p = ReplayProvider()
    with pytest.raises(ProviderError) as exc:
        run(p.complete(cfg(responses=[{"error": error}]), req("q")))
    assert (exc.value.retryable, exc.value.status) == (retryable, status)
    if isinstance(error, dict) and "message" in error:
        assert str(exc.value) == error["message"]
    if isinstance(error, dict) and "retry_after" in error:
        assert exc.value.retry_after == 2


def test_error_then_success_consumes_one_item_each():
    p, c = ReplayProvider(), cfg(responses=[{"error": {"status": 429}}, "ok"])
    with pytest.raises(ProviderError, match="HTTP 429"):
        run(p.complete(c, req("q")))
    assert run(p.complete(c, req("q"))).text == "ok"


def test_tool_calls_json_and_scripted_tokens():
    p = ReplayProvider()
    c = cfg(responses=[
        {"tool_calls": [{"name": "word_count", "arguments": {"text": "a b"}},
                        {"name": "kb", "arguments": '{"query": "retry"}', "id": "x9"}]},
        {"json": {"text": "done", "citations": []}, "tokens_in": 100, "tokens_out": 7},
    ])
    first = run(p.complete(c, req("q")))
    assert first.text == ""
    assert [(t.id, t.name, t.arguments) for t in first.tool_calls] == [
        ("call_1", "word_count", {"text": "a b"}), ("x9", "kb", {"query": "retry"})]
    second = run(p.complete(c, req("q")))
    assert json.loads(second.text) == {"text": "done", "citations": []}
    assert (second.tokens_in, second.tokens_out, second.tool_calls) == (100, 7, [])


def test_unknown_item_key_is_reported():
    with pytest.raises(ProviderError, match="unknown key 'txt'"):
        run(ReplayProvider().complete(cfg(responses=[{"txt": "typo"}]), req("q")))


def test_delay_uses_injected_sleep():
    slept = []

    async def fake_sleep(s):
        slept.append(s)

    p = ReplayProvider(sleep=fake_sleep)
    assert run(p.complete(cfg(responses=[{"text": "late", "delay": 3}]), req("q"))).text == "late"
    assert slept == [3.0]


def test_echo_replies_with_last_user_message():
    request = ChatRequest(messages=[{"role": "system", "content": "be brief"},
                                    {"role": "user", "content": "first"},
                                    {"role": "assistant", "content": "ok"},
                                    {"role": "user", "content": "say this back"}])
    reply = run(ReplayProvider().complete(cfg(echo=True), request))
    assert (reply.text, reply.tokens_in, reply.tokens_out) == ("say this back", 7, 3)  # 2 + 1 + 1 + 3 request words


@pytest.mark.parametrize("options, message", [
    ({}, "has none of its options"),
    ({"echo": True, "responses": ["x"]}, "has responses and echo; give only one of"),
])
def test_options_must_pick_one_mode(options, message):
    with pytest.raises(ProviderError, match=message) as exc:
        run(ReplayProvider().complete(cfg(**options), req("q")))
    assert "file:" in str(exc.value) and "echo: true" in str(exc.value)


def write_recording(tmp_path, entries):
    path = tmp_path / "rec.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries) + "\n", encoding="utf-8")
    return path


def test_recorded_file_matches_exact_messages(tmp_path):
    write_recording(tmp_path, [
        {"request": {"messages": [{"role": "user", "content": "What is 2+2?"}]}, "response": {"text": "4"}},
        {"request": {"messages": [{"role": "user", "content": "Hi"}]},
         "response": {"text": "Hello", "tokens_in": 9}},
    ])
    c = cfg(source=str(tmp_path / "app.fmflow"), file="rec.jsonl")  # relative to the flow file
    p = ReplayProvider()
    assert run(p.complete(c, req("Hi"))).tokens_in == 9
    assert run(p.complete(c, req("What is 2+2?"))).text == "4"
    assert run(p.complete(c, req("Hi"))).text == "Hello"  # matching, not consuming


def test_recorded_file_mismatch_names_first_difference(tmp_path):
    write_recording(tmp_path, [
        {"request": {"messages": [{"role": "system", "content": "sys"},
                                  {"role": "user", "content": "Question: what is fmflow?"}]},
         "response": {"text": "a language"}},
    ])
    c = cfg(source=str(tmp_path / "app.fmflow"), file="rec.jsonl")
    request = ChatRequest(messages=[{"role": "system", "content": "sys"},
                                    {"role": "user", "content": "Question: how do I retry?"}])
    with pytest.raises(ProviderError) as exc:
        run(ReplayProvider().complete(c, request))
    text = str(exc.value)
    assert "rec.jsonl" in text and "message 2" in text
    assert "Question: how do I retry?" in text and "Question: what is fmflow?" in text
    assert not exc.value.retryable


def test_recorded_file_missing_or_malformed(tmp_path):
    c = cfg(source=str(tmp_path / "app.fmflow"), file="nope.jsonl")
    with pytest.raises(ProviderError, match="cannot read recording"):
        run(ReplayProvider().complete(c, req("q")))
    (tmp_path / "bad.jsonl").write_text('{"request": {}}\n', encoding="utf-8")
    with pytest.raises(ProviderError, match=r"bad.jsonl:1: not a"):
        run(ReplayProvider().complete(cfg(source=str(tmp_path / "a.fmflow"), file="bad.jsonl"), req("q")))


def test_scripted_provider_list_records_requests_and_raises():
    p = ScriptedProvider(["hi", ChatResponse(text="raw", tokens_in=1), ProviderError("nope", status=401),
                          {"error": {"status": 429}}])
    register_provider("scripted-test", lambda: p)
    assert get_provider("scripted-test") is p
    c = ModelConfig(name="m", provider="scripted-test")

    async def go():
        out = [(await p.complete(c, req("a"))).text, (await p.complete(c, req("b"))).text]
        for _ in range(3):
            with pytest.raises(ProviderError) as exc:
                await p.complete(c, req("c"))
            out.append((exc.value.status, exc.value.retryable))
        return out

    assert run(go()) == ["hi", "raw", (401, False), (429, True), (None, False)]
    assert [r.messages[0]["content"] for r in p.requests] == ["a", "b", "c", "c", "c"]


def test_scripted_provider_callable_and_async_outcomes():
    async def answer(text):
        await asyncio.sleep(0)
        return text.upper()

    p = ScriptedProvider(lambda config, request: answer(request.messages[-1]["content"]))
    assert run(p.complete(cfg(), req("shout"))).text == "SHOUT"
    p2 = ScriptedProvider(lambda config, request: TimeoutError)
    with pytest.raises(TimeoutError):
        run(p2.complete(cfg(), req("x")))


def test_scripted_provider_on_call_observes_concurrency():
    async def go():
        release = asyncio.Event()
        entered = 0
        all_in = asyncio.Event()

        async def on_call(config, request):
            nonlocal entered
            entered += 1
            if entered == 5:
                all_in.set()
            await release.wait()

        p = ScriptedProvider(["x"], cycle=True, on_call=on_call)
        tasks = [asyncio.create_task(p.complete(cfg(), req("q"))) for _ in range(5)]
        await all_in.wait()
        assert p.in_flight == 5
        release.set()
        replies = await asyncio.gather(*tasks)
        return p, replies

    p, replies = run(go())
    assert [r.text for r in replies] == ["x"] * 5
    assert (p.in_flight, p.max_in_flight, len(p.requests)) == (0, 5, 5)
