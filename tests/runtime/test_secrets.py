"""Secrets are never written down: one masking rule (fmflow.secrets) for traces, the cache,
error messages and streamed text. Tests plant secret values and read every file a run wrote."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from fmflow.runtime.errors import FlowRuntimeError
from fmflow.secrets import MASK, MaskedStream, SecretMasker, is_secret_key_name, looks_like_key, \
    mask_url_credentials
from flowfiles import load

SECRET = "planted-Secret-6f1d9a"      # an env() value
KEY = "sk-test-0a1b2c3d4e5f6a7b8c9d"   # an API key


def written(tmp_path: Path) -> str:
    """Every byte fmflow wrote under .fmflow/ (traces, the cache database and its WAL, …)."""
    files = [p for p in (tmp_path / ".fmflow").rglob("*") if p.is_file()]
    assert files, "the run wrote nothing"
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in files)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -------------------------------------------------------------- the rule itself

@pytest.mark.parametrize("text, masked", [
    ("http://user:pw@host:8080/v1", "http://***@host:8080/v1"),
    ("could not reach https://KEY123@api.example.com/v1 (x)", "could not reach https://***@api.example.com/v1 (x)"),
    ("redis://:p%40ss@h", "redis://***@h"),
    ("two: http://a:b@h1 and ftp://c:d@h2/", "two: http://***@h1 and ftp://***@h2/"),
    ("'http://u:p@h'", "'http://***@h'"),
    ("mail me@example.com or see http://example.com/@user", "mail me@example.com or see http://example.com/@user"),
    ("no url here", "no url here"),
])
def test_url_credentials_are_always_masked(text, masked):
    assert mask_url_credentials(text) == masked
    assert SecretMasker().mask(text) == masked


def test_added_secrets_are_masked_longest_first_and_short_ones_ignored():
    masker = SecretMasker(["abcd", "abcdefgh", "", "xy", None])
    assert masker.mask("abcdefgh abcd xy") == f"{MASK} {MASK} xy"
    assert len(masker) == 2
    version = masker.version
    masker.add("abcd")                       # known already: nothing changes
    assert masker.version == version
    masker.add_url("https://user:pa55word@h/")
    assert masker.mask("pa55word") == MASK
    assert masker.reveals("x pa55word") and not masker.reveals("nothing")


def test_mask_data_masks_strings_keys_and_credential_named_fields():
    masker = SecretMasker([SECRET])
    data = {"text": f"is {SECRET}", SECRET: 1, "api_key": "k", "tokens_in": 3, "token": None,
            "items": [SECRET, 2, {"Authorization": "Bearer x"}]}
    assert masker.mask_data(data) == {"text": "is ***", MASK: 1, "api_key": MASK, "tokens_in": 3, "token": None,
                                      "items": [MASK, 2, {"Authorization": MASK}]}
    assert is_secret_key_name("X-Api-Key") and not is_secret_key_name("max_tokens")


@pytest.mark.parametrize("text, key", [
    ("OPENAI_API_KEY", False), ("ANTHROPIC_API_KEY", False), ("MY_SERVICE_PRODUCTION_API_KEY", False),
    ("HUGGING_FACE_HUB_TOKEN", False), ("my key", False), ("sk-abc", False),
    ("sk-abc123def456", True), ("sk-proj-4f9a8b7c6d5e4f3a2b1c", True), ("AKIAIOSFODNN7EXAMPLE", True),
    ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", True), ("a3f9c0d1e2b4a5c6d7e8f9a0b1c2d3e4", True),
    ("hf_abcdefghijk", True),
])
def test_looks_like_key(text, key):
    assert looks_like_key(text) is key


def test_a_stream_is_masked_even_when_a_secret_is_split_between_pieces():
    shown: list[str] = []
    stream = MaskedStream(SecretMasker([SECRET]), shown.append)
    for piece in ["the key ", SECRET[:6], SECRET[6:], " and http://u:", "pw@h ok", " tail"]:
        stream.write(piece)
    stream.flush()
    text = "".join(shown)
    assert text == "the key *** and http://***@h ok tail"


# -------------------------------------------------------------- runs

ENV_FLOW = '''
    model m {
      provider: "replay"
      temperature: 0
      options: { echo: true }
    }
    prompt say(x: str, k: str) -> str {
      model: m
      template: "{{ x }} with {{ k }}"
    }
    flow f(x: str) -> str {
      k = env("FMFLOW_TEST_SECRET")
      said = say(x: x, k: k)
      return said
    }
'''


def test_env_values_never_reach_the_trace_or_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FMFLOW_TEST_SECRET", SECRET)
    flow = load(tmp_path, ENV_FLOW)
    assert flow.run(x="hi") == f"hi with {SECRET}"     # the API gives the value itself
    assert flow.run(x="hi") == f"hi with {MASK}"        # … and a cache hit the masked reply
    everything = written(tmp_path)
    assert SECRET not in everything and MASK in everything
    assert any(p.suffix == ".sqlite3" for p in (tmp_path / ".fmflow").rglob("*"))


def test_an_env_value_read_late_is_masked_in_errors_too(tmp_path, monkeypatch):
    monkeypatch.setenv("FMFLOW_DYNAMIC_NAME", "FMFLOW_TEST_SECRET")
    monkeypatch.setenv("FMFLOW_TEST_SECRET", SECRET)
    flow = load(tmp_path, '''
        flow f(x: str) -> int {
          k = env(env("FMFLOW_DYNAMIC_NAME"))
          return int(k)
        }
    ''')
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(x="")
    assert SECRET not in str(info.value) and MASK in str(info.value)
    assert SECRET not in written(tmp_path)


def test_a_key_echoed_by_the_model_is_not_cached_or_traced(tmp_path, monkeypatch):
    monkeypatch.setenv("FMFLOW_TEST_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY + "-openai")
    flow = load(tmp_path, '''
        model m {
          provider: "replay"
          temperature: 0
          api_key_env: "FMFLOW_TEST_KEY"
          options: { echo: true }
        }
        prompt say(x: str) -> str {
          model: m
          template: "{{ x }}"
        }
        flow f(x: str) -> str {
          return say(x)
        }
    ''')
    flow.run(x=f"my key is {KEY} and {KEY}-openai")
    assert KEY not in written(tmp_path)


def test_url_credentials_are_masked_in_the_error_and_every_span(tmp_path, monkeypatch):
    monkeypatch.setenv("FMFLOW_TEST_URL_KEY", "unused-bearer")
    flow = load(tmp_path, f'''
        model remote {{
          provider: "openai"
          name: "gpt"
          base_url: "http://user:{KEY}@127.0.0.1:{closed_port()}/v1"
          api_key_env: "FMFLOW_TEST_URL_KEY"
        }}
        prompt ask(q: str) -> str {{
          model: remote
          template: "{{{{ q }}}}"
        }}
        flow f(q: str) -> str {{
          return ask(q)
        }}
    ''')
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(q="hi")
    assert KEY not in str(info.value) and "could not reach http://***@127.0.0.1" in str(info.value)
    assert KEY not in written(tmp_path)


def test_a_key_reaching_api_key_env_at_run_time_is_refused_without_echo(tmp_path, monkeypatch):
    monkeypatch.setenv("FMFLOW_KEY_NAME", KEY)   # the key itself where its variable's name belongs
    flow = load(tmp_path, '''
        model remote {
          provider: "openai"
          api_key_env: env("FMFLOW_KEY_NAME")
        }
        prompt ask(q: str) -> str {
          model: remote
          template: "{{ q }}"
        }
        flow f(q: str) -> str {
          return ask(q)
        }
    ''')
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(q="hi")
    assert "looks like a key, not a variable name" in str(info.value) and KEY not in str(info.value)
    assert KEY not in written(tmp_path)


def test_a_key_given_to_env_as_a_name_is_refused_without_echo(tmp_path):
    flow = load(tmp_path, f'''
        flow f(q: str) -> str {{
          return env("{KEY}")
        }}
    ''')
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(q="hi")
    assert "looks like a key" in str(info.value) and KEY not in str(info.value)
    assert KEY not in written(tmp_path)


def test_a_tool_error_sent_to_an_agent_is_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("FMFLOW_TEST_SECRET", SECRET)
    (tmp_path / "leaky.py").write_text(
        "import os\ndef leak(x):\n    raise RuntimeError('token ' + os.environ['FMFLOW_TEST_SECRET'])\n")
    seen = []
    flow = load(tmp_path, '''
        model m {
          provider: "replay"
          options: { responses: [{ tool_calls: [{ name: "leak", arguments: { x: "a" } }] }, "done"] }
        }
        tool leak(x: str) -> str = python("leaky:leak")
        agent helper(q: str) -> str {
          model: m
          tools: [leak]
          template: "{{ q }} {{ k }}"
        }
        flow f(q: str) -> str {
          k = env("FMFLOW_TEST_SECRET")
          return helper(q: q, k: k)
        }
    '''.replace("helper(q: str)", "helper(q: str, k: str)"))
    from fmflow.providers import get_provider

    replay = get_provider("replay")
    original = replay.complete

    async def spy(config, request):
        seen.append(request.messages)
        return await original(config, request)

    monkeypatch.setattr(replay, "complete", spy)
    assert flow.run(q="go") == "done"
    tool_message = seen[-1][-1]
    assert tool_message["role"] == "tool" and "token ***" in tool_message["content"]
    assert SECRET not in written(tmp_path)


def test_streamed_text_is_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("FMFLOW_TEST_SECRET", SECRET)
    shown: list[str] = []
    flow = load(tmp_path, ENV_FLOW)
    flow.options.on_text = shown.append
    assert flow.run(x="hi") == f"hi with {SECRET}"
    assert "".join(shown) == f"hi with {MASK}"


def test_the_run_result_carries_its_masker(tmp_path, monkeypatch):
    monkeypatch.setenv("FMFLOW_TEST_SECRET", SECRET)
    flow = load(tmp_path, ENV_FLOW, cache=False)
    flow.run(x="hi")
    assert flow.last_run.secrets.mask_data(flow.last_run.data) == f"hi with {MASK}"
    assert asyncio.run(flow.arun(x="x")) == f"x with {SECRET}"


def test_fmflow_test_output_masks_env_values(tmp_path, monkeypatch):
    from fmflow.runtime.testing import run_tests

    monkeypatch.setenv("FMFLOW_TEST_SECRET", SECRET)
    flow = load(tmp_path, '''
        flow f(x: str) -> str {
          return x + env("FMFLOW_TEST_SECRET")
        }
        test shows_the_value {
          flow: f
          input: { x: "a" }
          expect: [output == "b"]
        }
        test fails_with_it {
          flow: f
          input: { x: "a" }
          expect: [int(output) == 1]
        }
    ''', flow="f")
    outcomes = asyncio.run(run_tests(flow.program))
    shown = "\n".join(f"{o.error} {o.failures}" for o in outcomes)
    assert SECRET not in shown and "a***" in shown
