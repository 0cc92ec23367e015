"""`provider: "hf"`: local transformers models, offline (a tiny random GPT-2 built for the session).

Concurrency is shown by the order of events (who ran while generation was
held), never by timing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import fmflow
from fmflow.providers import ChatRequest, ModelConfig, ProviderError, get_provider
from fmflow.providers.hf import HFProvider, prompt_text

from tiny_gpt2 import tiny_gpt2_dir  # noqa: F401 - session fixture

WAIT = 10.0  # seconds a thread event may take before the test fails instead of hanging


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def provider():
    p = HFProvider()
    yield p
    asyncio.run(p.aclose())


def cfg(folder, name="m", source="", **kwargs) -> ModelConfig:
    kwargs.setdefault("max_tokens", 8)
    kwargs.setdefault("temperature", 0)
    return ModelConfig(name=name, provider="hf", model=str(folder), source=source, **kwargs)


MESSAGES = [{"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": "How do I retry a prompt?"}]


def req(messages=MESSAGES, **kwargs) -> ChatRequest:
    return ChatRequest(messages=list(messages), **kwargs)


def reference(folder, messages, max_new_tokens=8):
    """What transformers itself generates greedily for the chat-templated messages."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    n = enc["input_ids"].shape[1]
    return tok.decode(out[0, n:], skip_special_tokens=True), n, out.shape[1] - n


# ------------------------------------------------------------ loading and imports

def test_importing_fmflow_and_checking_never_imports_torch(tmp_path):
    flow = tmp_path / "f.fmflow"
    flow.write_text('model m { provider: "hf", name: "./model" }\n', encoding="utf-8")
    code = textwrap.dedent(f"""
        import sys, fmflow
        from fmflow.providers import get_provider
        fmflow.check({str(flow)!r})
        import fmflow.providers.hf
        get_provider("hf"); get_provider("builtin")
        print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.getcwd())
    assert out.stdout.strip() == "[]"


def test_registered_as_hf():
    assert isinstance(get_provider("hf"), HFProvider)


def test_missing_folder_is_a_clear_error(provider, tmp_path):
    config = cfg("./no-such-model", source=str(tmp_path / "flow.fmflow"))
    with pytest.raises(ProviderError) as exc:
        asyncio.run(provider.complete(config, req()))
    message = str(exc.value)
    assert not exc.value.retryable
    assert "'./no-such-model' was not found locally" in message
    assert str(tmp_path / "no-such-model") in message  # resolved against the flow file's folder
    assert "save_pretrained" in message and "never downloads" in message
    assert provider.loads == 0


def test_hub_id_missing_from_the_cache_is_a_clear_error(provider, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProviderError) as exc:
        asyncio.run(provider.complete(cfg("fmflow-test/no-such-model"), req()))
    message = str(exc.value)
    assert not exc.value.retryable
    assert "'fmflow-test/no-such-model' was not found locally" in message
    assert "hf download fmflow-test/no-such-model" in message


def test_folder_without_a_model_is_a_clear_error(provider, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProviderError, match="holds no transformers model"):
        asyncio.run(provider.complete(cfg(tmp_path / "empty"), req()))


def test_cuda_when_unavailable_is_a_clear_error(provider, tiny_gpt2_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ProviderError, match="CUDA is not available"):
        asyncio.run(provider.complete(cfg(tiny_gpt2_dir, options={"device": "cuda"}), req()))


# ------------------------------------------------------------ answers

def test_text_and_token_counts_match_transformers(provider, tiny_gpt2_dir):
    response = asyncio.run(provider.complete(cfg(tiny_gpt2_dir), req()))
    text, n_in, n_out = reference(tiny_gpt2_dir, MESSAGES)
    assert response.text == text and response.text.strip()
    assert (response.tokens_in, response.tokens_out) == (n_in, n_out)
    assert n_out <= 8
    assert response.model == str(tiny_gpt2_dir)
    assert response.cost is None  # a local model is unpriced unless options.cost says otherwise


def test_greedy_is_deterministic(provider, tiny_gpt2_dir):
    async def twice():
        first = await provider.complete(cfg(tiny_gpt2_dir), req())
        second = await provider.complete(cfg(tiny_gpt2_dir), req())
        return first.text, second.text

    first, second = asyncio.run(twice())
    assert first == second


def test_max_tokens_and_default(provider, tiny_gpt2_dir):
    async def go():
        short = await provider.complete(cfg(tiny_gpt2_dir, max_tokens=3), req())
        default = await provider.complete(cfg(tiny_gpt2_dir, max_tokens=None), req())
        return short, default

    short, default = asyncio.run(go())
    assert short.tokens_out <= 3
    # Default 256 new tokens, capped by the context (128 positions) minus the prompt.
    assert short.tokens_out < default.tokens_out <= 128 - default.tokens_in


def test_sampling_with_a_seed_is_reproducible(provider, tiny_gpt2_dir):
    config = cfg(tiny_gpt2_dir, temperature=1.5, max_tokens=12, options={"seed": 7, "top_k": 50})

    async def go():
        return [(await provider.complete(config, req())).text for _ in range(2)]

    a, b = asyncio.run(go())
    assert a == b
    greedy = asyncio.run(provider.complete(cfg(tiny_gpt2_dir, max_tokens=12), req())).text
    assert a != greedy


def test_unknown_option_is_an_error(provider, tiny_gpt2_dir):
    with pytest.raises(ProviderError, match="option 'topp' is not a generation setting"):
        asyncio.run(provider.complete(cfg(tiny_gpt2_dir, options={"topp": 0.9}), req()))


def test_transcript_without_a_chat_template(tiny_gpt2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_gpt2_dir, local_files_only=True)
    assert prompt_text(tok, MESSAGES) == ("<|system|>You answer briefly.\n<|user|>How do I retry a prompt?\n"
                                          "<|assistant|>", True)
    tok.chat_template = None
    assert prompt_text(tok, MESSAGES) == ("system: You answer briefly.\nuser: How do I retry a prompt?\n"
                                          "assistant:", False)


def test_streaming_pieces_arrive_on_the_loop_thread(provider, tiny_gpt2_dir):
    pieces: list[tuple[str, int]] = []

    def on_text(piece: str) -> None:
        pieces.append((piece, threading.get_ident()))

    response = asyncio.run(provider.complete(cfg(tiny_gpt2_dir, max_tokens=12), req(on_text=on_text)))
    assert pieces, "on_text was never called"
    assert "".join(p for p, _ in pieces) == response.text
    assert {ident for _, ident in pieces} == {threading.get_ident()}  # asyncio.run runs the loop here


# ------------------------------------------------------------ sharing and concurrency

def test_concurrent_first_calls_load_the_model_once(provider, tiny_gpt2_dir, monkeypatch):
    import transformers

    original = transformers.AutoModelForCausalLM.from_pretrained.__func__
    entered, release = threading.Event(), threading.Event()
    loads: list[str] = []

    def counting(cls, *args, **kwargs):
        loads.append(str(args[0]))
        entered.set()
        assert release.wait(WAIT), "the test never released the load"
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(counting))

    async def go():
        tasks = [asyncio.create_task(provider.complete(cfg(tiny_gpt2_dir), req())) for _ in range(4)]
        # By the time the loader thread reports in, every task has already asked for the model.
        assert await asyncio.to_thread(entered.wait, WAIT)
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*tasks)

    responses = asyncio.run(go())
    assert loads == [str(tiny_gpt2_dir)]
    assert provider.loads == 1
    assert len({r.text for r in responses}) == 1

    # Later calls, on another event loop, use the same model; another device would be another model.
    asyncio.run(provider.complete(cfg(tiny_gpt2_dir), req()))
    assert loads == [str(tiny_gpt2_dir)]


def test_generation_does_not_block_the_event_loop(provider, tiny_gpt2_dir):
    config = cfg(tiny_gpt2_dir)
    asyncio.run(provider.complete(config, req()))  # load first
    model = provider._models[(str(tiny_gpt2_dir), "cpu", "float32")].model
    started, release = threading.Event(), threading.Event()
    events: list[str] = []
    generate = model.generate

    def held_generate(*args, **kwargs):
        started.set()
        release.wait(WAIT)
        return generate(*args, **kwargs)

    model.generate = held_generate
    try:
        async def other():
            events.append("other coroutine ran")

        async def go():
            call = asyncio.create_task(provider.complete(config, req()))
            assert await asyncio.to_thread(started.wait, WAIT)
            events.append("generate started")
            await other()  # runs while generate is still held in its thread
            release.set()
            response = await call
            events.append("generate finished")
            return response

        response = asyncio.run(go())
    finally:
        del model.generate
    assert events == ["generate started", "other coroutine ran", "generate finished"]
    assert response.text


def test_generate_calls_are_serialised(provider, tiny_gpt2_dir):
    config = cfg(tiny_gpt2_dir)
    asyncio.run(provider.complete(config, req()))
    model = provider._models[(str(tiny_gpt2_dir), "cpu", "float32")].model
    generate = model.generate
    lock = threading.Lock()
    inside, most = [0], [0]

    def counting_generate(*args, **kwargs):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            return generate(*args, **kwargs)
        finally:
            with lock:
                inside[0] -= 1

    model.generate = counting_generate
    try:
        async def go():
            return await asyncio.gather(*(provider.complete(config, req()) for _ in range(4)))

        responses = asyncio.run(go())
    finally:
        del model.generate
    assert most[0] == 1
    assert len({r.text for r in responses}) == 1


def test_a_cancelled_call_stops_generating(provider, tiny_gpt2_dir):
    config = cfg(tiny_gpt2_dir, max_tokens=100)
    asyncio.run(provider.complete(cfg(tiny_gpt2_dir), req()))
    model = provider._models[(str(tiny_gpt2_dir), "cpu", "float32")].model
    forward, generate = model.forward, model.generate
    steps, cancelled, finished = [0], threading.Event(), threading.Event()
    generated: list[int] = []

    def held_forward(*args, **kwargs):
        steps[0] += 1
        if steps[0] == 2:  # the second token waits until the call has been cancelled
            cancelled.wait(WAIT)
        return forward(*args, **kwargs)

    def recording_generate(*args, **kwargs):
        try:
            out = generate(*args, **kwargs)
            generated.append(out.shape[1] - kwargs["input_ids"].shape[1])
            return out
        finally:
            finished.set()

    model.forward, model.generate = held_forward, recording_generate
    try:
        async def go():
            call = asyncio.create_task(provider.complete(config, req()))
            while steps[0] < 2:
                await asyncio.sleep(0.01)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            cancelled.set()
            assert await asyncio.to_thread(finished.wait, WAIT)

        asyncio.run(go())
    finally:
        del model.forward, model.generate
    assert generated == [2]  # stopped at the token after the cancel, not after 100
    assert asyncio.run(provider.complete(cfg(tiny_gpt2_dir), req())).text  # the model is free again


def test_aclose_frees_the_models(provider, tiny_gpt2_dir):
    asyncio.run(provider.complete(cfg(tiny_gpt2_dir), req()))
    assert provider._models
    asyncio.run(provider.aclose())
    assert not provider._models
    asyncio.run(provider.complete(cfg(tiny_gpt2_dir), req()))  # loads again when asked again
    assert provider.loads == 2


# ------------------------------------------------------------ through a flow

def test_a_flow_runs_on_a_local_model(tmp_path, tiny_gpt2_dir):
    folder = os.path.relpath(tiny_gpt2_dir, tmp_path)  # relative to the flow file's folder
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(f'''
        model m {{ provider: "hf", name: "{folder}", max_tokens: 8, temperature: 0 }}

        prompt ask(question: str) -> str {{
          model: m
          system: "You answer briefly."
          template: "{{{{ question }}}}"
        }}

        flow main(question: str) -> str {{
          a = ask(question: question)
          b = ask(question: question + " Again?")
          return a + "|" + b
        }}
    '''), encoding="utf-8")
    hf = get_provider("hf")
    before = hf.loads
    try:
        flow = fmflow.load(path, workdir=tmp_path)
        result = flow.run(question="How do I retry a prompt?")
        assert hf.loads == before + 1  # both calls share one loaded model
    finally:
        asyncio.run(get_provider("hf").aclose())
    first, second = result.split("|")  # a `-> str` result is stripped by the runtime
    assert first == reference(tiny_gpt2_dir, MESSAGES)[0].strip()
    again = [MESSAGES[0], {"role": "user", "content": "How do I retry a prompt? Again?"}]
    assert second == reference(tiny_gpt2_dir, again)[0].strip()
