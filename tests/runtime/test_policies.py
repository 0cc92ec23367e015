"""`on_fail` policies of prompts and the transport keys of models (LANGUAGE.md §2, §3).

Every policy meets each way an answer can be rejected: it does not parse, it
does not validate against the output type, or it fails a `check:`. Transport
faults (429, 401, 5xx, timeouts) are scripted; backoff waits are switched off.
"""

from __future__ import annotations

import json
import textwrap

import pytest

import fmflow
from fmflow.runtime import transport
from fmflow.runtime.errors import FlowRuntimeError

SCRIPTED = 'env("FMFLOW_TEST_PROVIDER", "scripted")'

GOOD = '{"text": "ok", "confidence": 0.5}'
BAD = {
    "unparsable": ("I am sorry, I cannot answer that.", None),
    "invalid": ('{"text": "missing the confidence"}', "confidence"),
    "check": ('{"text": "too sure", "confidence": 7}', "output.confidence <= 1.0"),
}

POLICY_FLOW = '''
    type Answer {{
      text: str
      confidence: float
    }}
    model m {{
      provider: {provider}
      temperature: 0
      fallback: [backup]
      {extra}
    }}
    model backup {{
      provider: {provider}
    }}
    prompt answer(question: str) -> Answer {{
      model: m
      template: "Q: {{{{ question }}}}"
      check: [output.confidence <= 1.0]
      on_fail: {policy}
    }}
    flow f(question: str) -> Answer {{
      a = answer(question)
      return a
    }}
'''


CALL_LINE = next(n for n, line in enumerate(textwrap.dedent(POLICY_FLOW).splitlines(), 1)
                 if "a = answer(question)" in line)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    """Retries come back at once: full jitter with random() == 0 waits 0 s."""
    defaults = transport.call_with_retries.__kwdefaults__ or {}
    if "random" in defaults:
        monkeypatch.setitem(transport.call_with_retries.__kwdefaults__, "random", lambda: 0.0)


def load(tmp_path, policy: str = "raise", extra: str = "", **kwargs):
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(POLICY_FLOW.format(provider=SCRIPTED, policy=policy, extra=extra)),
                    encoding="utf-8")
    kwargs.setdefault("workdir", tmp_path)
    return fmflow.load(path, **kwargs)


def by_model(**answers):
    """A script answering per model declaration from lists of outcomes."""
    queues = {name: list(items) for name, items in answers.items()}

    def script(config, request):
        return queues[config.name].pop(0)
    return script


def model_spans(flow) -> list[dict]:
    with open(flow.last_run.trace_path, encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r.get("type") == "span" and r.get("kind") == "model"]


def names(provider) -> list[str]:
    return [config.name for config, _request in provider.calls]


# ------------------------------------------------------------ reask

@pytest.mark.parametrize("kind", list(BAD))
def test_reask_sends_the_previous_answer_and_the_error(tmp_path, scripted, kind):
    bad, reason = BAD[kind]
    provider = scripted([bad, GOOD])
    answer = load(tmp_path, "reask(2)").run(question="q")
    assert (answer.text, answer.confidence) == ("ok", 0.5)
    first, second = provider.requests
    assert second.messages[:len(first.messages)] == first.messages
    previous, error = second.messages[len(first.messages):]
    assert previous == {"role": "assistant", "content": bad}
    assert error["role"] == "user"
    if reason:
        assert reason in error["content"]


@pytest.mark.parametrize("kind", list(BAD))
def test_reask_gives_up_after_n_reasks(tmp_path, scripted, kind):
    bad, reason = BAD[kind]
    provider = scripted([bad, bad, bad, GOOD])
    with pytest.raises(FlowRuntimeError) as info:
        load(tmp_path, "reask(2)").run(question="q")
    assert len(provider.requests) == 3
    assert "rejected" in str(info.value)
    assert len(provider.requests[2].messages) == len(provider.requests[0].messages) + 4


# ------------------------------------------------------------ retry

@pytest.mark.parametrize("kind", list(BAD))
def test_retry_sends_the_same_request_again(tmp_path, scripted, kind):
    provider = scripted([BAD[kind][0], GOOD])
    answer = load(tmp_path, "retry(2)").run(question="q")
    assert answer.text == "ok"
    first, second = provider.requests
    assert second.messages == first.messages
    assert names(provider) == ["m", "m"]


@pytest.mark.parametrize("kind", list(BAD))
def test_retry_gives_up_after_n_retries(tmp_path, scripted, kind):
    provider = scripted([BAD[kind][0]] * 3 + [GOOD])
    with pytest.raises(FlowRuntimeError) as info:
        load(tmp_path, "retry(2)").run(question="q")
    assert len(provider.requests) == 3
    assert "rejected" in str(info.value)


def test_retry_is_not_served_from_the_cache(tmp_path, scripted):
    # Run 1 (no check yet) caches a confident answer; run 2 adds a check it fails.
    provider = scripted(['{"text": "cached", "confidence": 7}', GOOD])
    path = tmp_path / "flow.fmflow"
    load(tmp_path, "retry(1)")
    path.write_text(path.read_text().replace("check: [output.confidence <= 1.0]", ""), encoding="utf-8")
    first = fmflow.load(path, workdir=tmp_path)
    assert first.run(question="q").text == "cached"

    second = load(tmp_path, "retry(1)")
    assert second.run(question="q").text == "ok"
    assert len(provider.requests) == 2  # the retry went to the model, not to the cached reply
    assert [s["cache_hit"] for s in model_spans(second)] == [True, False]


def test_retry_with_cache_asks_the_model_each_time(tmp_path, scripted):
    provider = scripted(["nope", "still nope", GOOD])
    assert load(tmp_path, "retry(2)").run(question="q").text == "ok"
    assert len(provider.requests) == 3


# ------------------------------------------------------------ fallback

@pytest.mark.parametrize("kind", list(BAD))
def test_fallback_model_answers(tmp_path, scripted, kind):
    provider = scripted(by_model(m=[BAD[kind][0]], backup=[GOOD]))
    assert load(tmp_path, "fallback").run(question="q").text == "ok"
    assert names(provider) == ["m", "backup"]
    assert provider.requests[1].messages == provider.requests[0].messages


def test_fallback_model_rejected_too_raises(tmp_path, scripted):
    provider = scripted(by_model(m=[BAD["check"][0]], backup=[BAD["check"][0]]))
    with pytest.raises(FlowRuntimeError) as info:
        load(tmp_path, "fallback").run(question="q")
    assert names(provider) == ["m", "backup"]
    assert "rejected" in str(info.value) and "output.confidence <= 1.0" in str(info.value)


# ------------------------------------------------------------ default

@pytest.mark.parametrize("kind", list(BAD))
def test_default_value_replaces_a_rejected_answer(tmp_path, scripted, kind):
    provider = scripted([BAD[kind][0], GOOD])
    flow = load(tmp_path, 'default(Answer(text: "default for " + question, confidence: 0.0))')
    answer = flow.run(question="q")
    assert (answer.text, answer.confidence) == ("default for q", 0.0)
    assert len(provider.requests) == 1


def test_a_good_answer_is_not_replaced_by_the_default(tmp_path, scripted):
    scripted([GOOD])
    flow = load(tmp_path, 'default(Answer(text: "default", confidence: 0.0))')
    assert flow.run(question="q").text == "ok"


# ------------------------------------------------------------ raise

@pytest.mark.parametrize("policy", ["raise", None])
@pytest.mark.parametrize("kind", list(BAD))
def test_raise_says_the_answer_was_rejected_and_why(tmp_path, scripted, kind, policy):
    bad, reason = BAD[kind]
    provider = scripted([bad, GOOD])
    flow = load(tmp_path, policy or "raise")
    if policy is None:  # no on_fail at all means raise
        path = tmp_path / "flow.fmflow"
        path.write_text(path.read_text().replace("on_fail: raise", ""), encoding="utf-8")
        flow = fmflow.load(path, workdir=tmp_path)
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(question="q")
    message = str(info.value)
    assert "answer" in message and "rejected" in message
    assert "prompt 'answer'" in message
    if reason:
        assert reason in message
    assert info.value.flow == "f" and info.value.line == CALL_LINE
    assert len(provider.requests) == 1


# ------------------------------------------------------------ transport

def test_transport_retries_429_then_succeeds(tmp_path, scripted):
    slow_down = {"error": {"status": 429, "message": "slow down"}}
    provider = scripted([slow_down, slow_down, GOOD])
    flow = load(tmp_path, "raise", extra="retry: 2")
    assert flow.run(question="q").text == "ok"
    assert len(provider.requests) == 3
    [span] = model_spans(flow)
    assert [(a["attempt"], a["status"]) for a in span["attempts"]] == [(1, 429), (2, 429)]
    assert span["error"] is None


def test_trace_counts_the_transport_retries(tmp_path, scripted):
    slow_down = {"error": {"status": 429, "message": "slow down"}}
    scripted([slow_down, slow_down, GOOD])
    flow = load(tmp_path, "raise", extra="retry: 2")
    flow.run(question="q")
    [span] = model_spans(flow)
    assert span["retries"] == 2


def test_transport_429_beyond_the_retries_fails(tmp_path, scripted):
    slow_down = {"error": {"status": 429, "message": "slow down"}}
    provider = scripted(by_model(m=[slow_down] * 3, backup=[{"error": {"status": 429}}]))
    flow = load(tmp_path, "raise", extra="retry: 2")
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(question="q")
    assert names(provider) == ["m", "m", "m", "backup"]
    assert "slow down" in str(info.value)


def test_transport_401_fails_at_once(tmp_path, scripted):
    denied = {"error": {"status": 401, "message": "invalid api key"}}
    provider = scripted(by_model(m=[denied, GOOD], backup=[denied]))
    flow = load(tmp_path, "raise", extra="retry: 3")
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(question="q")
    assert names(provider).count("m") == 1  # never retried
    assert "invalid api key" in str(info.value)
    assert info.value.line == CALL_LINE


def test_fallback_model_is_used_after_the_retries_are_spent(tmp_path, scripted):
    down = {"error": {"status": 503, "message": "overloaded"}}
    provider = scripted(by_model(m=[down, down], backup=[GOOD]))
    flow = load(tmp_path, "raise", extra="retry: 1")
    assert flow.run(question="q").text == "ok"
    assert names(provider) == ["m", "m", "backup"]
    spans = model_spans(flow)
    assert [s["name"] for s in spans] == ["m", "backup"]
    assert spans[0]["error"] is not None and len(spans[0]["attempts"]) == 2
    assert spans[1]["error"] is None


def test_a_slow_answer_past_the_timeout_counts_as_a_failed_attempt(tmp_path, scripted):
    provider = scripted([{"text": GOOD, "delay": 5}, GOOD])
    flow = load(tmp_path, "raise", extra="timeout: 50ms\nretry: 1")
    assert flow.run(question="q").text == "ok"
    assert len(provider.requests) == 2
    [span] = model_spans(flow)
    assert len(span["attempts"]) == 1 and "timed out" in span["attempts"][0]["error"]


def test_a_timeout_without_retries_fails_the_call(tmp_path, scripted):
    provider = scripted(by_model(m=[{"text": GOOD, "delay": 5}], backup=[{"error": {"status": 500}}]))
    flow = load(tmp_path, "raise", extra="timeout: 50ms")
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(question="q")
    assert "timed out" in str(info.value)
    assert provider.in_flight == 0


def test_replay_scripted_transport_errors_from_the_flow_file(tmp_path):
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent('''
        model m {
          provider: "replay"
          retry: 2
          options: { responses: [
            { error: { status: 429, message: "busy", retry_after: 0 } },
            { error: { status: 500, message: "oops" } },
            { json: { answer: "fine" } }
          ] }
        }
        prompt p(x: str) -> str {
          model: m
          template: "{{ x }}"
        }
        flow f(x: str) -> str {
          return p(x)
        }
    '''), encoding="utf-8")
    flow = fmflow.load(path, workdir=tmp_path)
    assert json.loads(flow.run(x="q")) == {"answer": "fine"}
    [span] = model_spans(flow)
    assert [a["status"] for a in span["attempts"]] == [429, 500]


def test_waiting_for_a_concurrency_slot_does_not_count_against_the_timeout(tmp_path, scripted):
    provider = scripted(lambda config, request: {"text": request.messages[-1]["content"], "delay": 0.3})
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(f'''
        model m {{
          provider: {SCRIPTED}
          concurrency: 1
          timeout: 500ms
        }}
        prompt p(x: str) -> str {{
          model: m
          template: "{{{{ x }}}}"
        }}
        flow f(items: list[str]) -> list[str] {{
          return [p(i) for i in items]
        }}
    '''), encoding="utf-8")
    flow = fmflow.load(path, workdir=tmp_path, cache=False)
    assert flow.run(items=["a", "b", "c"]) == ["a", "b", "c"]
    assert provider.max_in_flight == 1


AGENT_FLOW = '''
    model m {{ provider: {provider} }}
    agent helper(q: str) -> str {{
      model: m
      template: "{{{{ q }}}}"
      check: [len(output) < 5]
      on_fail: {policy}
    }}
    flow f(q: str) -> str {{
      return helper(q)
    }}
'''


@pytest.mark.parametrize("policy, expected, requests", [
    ("reask(1)", "ok", 2),
    ("retry(1)", "ok", 2),
    ('default("dflt")', "dflt", 1),
])
def test_agent_on_fail_policies(tmp_path, scripted, policy, expected, requests):
    provider = scripted(["a very long answer", "ok"])
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(AGENT_FLOW.format(provider=SCRIPTED, policy=policy)), encoding="utf-8")
    flow = fmflow.load(path, workdir=tmp_path)
    assert flow.run(q="x") == expected
    assert len(provider.requests) == requests


def test_agent_without_on_fail_raises_when_its_check_fails(tmp_path, scripted):
    scripted(["a very long answer"])
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(AGENT_FLOW.format(provider=SCRIPTED, policy="raise")), encoding="utf-8")
    with pytest.raises(FlowRuntimeError) as info:
        fmflow.load(path, workdir=tmp_path).run(q="x")
    assert "rejected" in str(info.value) and "len(output) < 5" in str(info.value)


def test_a_reply_cut_off_at_the_token_limit_says_so(tmp_path, scripted):
    from fmflow.providers import ChatResponse

    scripted([ChatResponse(text='{"text": "ok", "confid', truncated=True)])
    flow = load(tmp_path)
    with pytest.raises(FlowRuntimeError) as raised:
        flow.run(question="q")
    assert "token limit" in str(raised.value) and "max_tokens" in str(raised.value)
