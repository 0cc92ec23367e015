"""Swapping declared models for a run: `--model NAME=PROVIDER:MODEL` and `models={…}` (LANGUAGE.md §7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fmflow.runtime.models import ModelChoiceError, parse_model_choices
from flowfiles import load, write

ROOT = Path(__file__).resolve().parents[2]

FLOW = '''
    model fast {
      provider: "replay"
      temperature: 0.3
      max_tokens: 77
      options: { responses: ["from the replay script"] }
    }
    model other {
      provider: "replay"
      options: { responses: ["from other"] }
    }
    prompt p(x: str) -> str {
      model: fast
      template: "asked {{ x }}"
    }
    prompt q(x: str) -> str {
      model: other
      template: "other {{ x }}"
    }
    prompt r(x: str) -> str {
      template: "default {{ x }}"
    }
    flow f(x: str) -> str {
      return p(x) + " | " + q(x) + " | " + r(x)
    }
'''


def test_a_declared_model_is_replaced_keeping_its_settings(tmp_path, scripted):
    provider = scripted(["from scripted"])
    flow = load(tmp_path, FLOW, models={"fast": "scripted:big-model"}, model="replay:echo", trace=False)
    assert flow.run(x="1") == "from scripted | from other | default 1"
    [(config, request)] = provider.calls
    assert (config.name, config.provider, config.model) == ("fast", "scripted", "big-model")
    assert (config.temperature, config.max_tokens) == (0.3, 77)  # its other settings stay
    assert config.options == {}  # the replay options belonged to the replay provider
    assert request.temperature == 0.3 and request.max_tokens == 77


def test_replay_echo_replaces_a_scripted_replay_model(tmp_path):
    flow = load(tmp_path, FLOW, models={"fast": "replay:echo", "other": "replay:echo"}, model="replay:echo",
                trace=False)
    assert flow.run(x="1") == "asked 1 | other 1 | default 1"


def test_the_same_provider_keeps_its_options(tmp_path):
    flow = load(tmp_path, FLOW, models={"fast": "replay:another-name"}, model="replay:echo", trace=False)
    assert flow.run(x="1").startswith("from the replay script | ")


def test_default_names_the_model_of_prompts_that_name_none(tmp_path):
    flow = load(tmp_path, FLOW, models={"default": "replay:echo"}, trace=False)
    assert flow.run(x="1").endswith(" | default 1")


def test_the_trace_names_the_model_that_answered(tmp_path):
    import json

    flow = load(tmp_path, FLOW, models={"fast": "replay:echo"}, model="replay:echo")
    flow.run(x="1")
    spans = [json.loads(line) for line in open(flow.last_run.trace_path, encoding="utf-8")]
    fast = next(s for s in spans if s.get("kind") == "model" and s["name"] == "fast")
    assert (fast["provider"], fast["model"]) == ("replay", "echo")


@pytest.mark.parametrize("models, message", [
    ({"fats": "replay:echo"}, "models\\['fats'\\]: .* declares no model 'fats'; did you mean 'fast'\\?"),
    ({"p": "replay:echo"}, "models\\['p'\\]: 'p' is a prompt in .*, not a model"),
    ({"fast": "no-colon"}, "models\\['fast'\\] expects PROVIDER:NAME"),
    ({"fast": ":x"}, "expects PROVIDER:NAME"),
    ({"not a name": "replay:echo"}, "is not the name of a declared model"),
])
def test_a_model_that_cannot_be_replaced_is_a_value_error(tmp_path, models, message):
    with pytest.raises(ValueError, match=message):
        load(tmp_path, FLOW, models=models)


@pytest.mark.parametrize("specs, default, overrides", [
    (None, None, {}),
    (["ollama:llama3.2"], "ollama:llama3.2", {}),
    (["fast=ollama:llama3.2"], None, {"fast": "ollama:llama3.2"}),
    (["fast=ollama:llama3.2", "slow=openai:gpt-4o", "hf:tiny"], "hf:tiny",
     {"fast": "ollama:llama3.2", "slow": "openai:gpt-4o"}),
    (["default=ollama:llama3.2"], "ollama:llama3.2", {"default": "ollama:llama3.2"}),
    (["fast=openai:org/model:v1"], None, {"fast": "openai:org/model:v1"}),
])
def test_parsing_model_choices(specs, default, overrides):
    choice = parse_model_choices(specs)
    assert (choice.default, choice.overrides) == (default, overrides)


@pytest.mark.parametrize("specs, message", [
    (["a:b", "c:d"], "given twice"),
    (["fast="], "--model fast=… expects PROVIDER:NAME"),
    (["9x=a:b"], "NAME=PROVIDER:MODEL"),
    (["nocolon"], "--model expects PROVIDER:NAME"),
])
def test_bad_model_choices(specs, message):
    with pytest.raises(ModelChoiceError, match=message):
        parse_model_choices(specs)


def fmflow(cwd, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FMFLOW_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "fmflow", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_run_replaces_models(tmp_path):
    path = write(tmp_path, FLOW)
    result = fmflow(tmp_path, "run", path, "-i", "x=1", "--model", "fast=replay:echo", "--model", "replay:echo")
    assert (result.returncode, result.stdout) == (0, "asked 1 | from other | default 1\n"), result.stderr


@pytest.mark.parametrize("command", [["run", "-i", "x=1"], ["test"], ["render", "--prompt", "p", "-i", "x=1"],
                                     ["serve", "--port", "0"],
                                     ["batch", "--input", "in.jsonl", "--output", "out.jsonl"]])
def test_cli_unknown_model_name_is_a_usage_error_with_did_you_mean(tmp_path, command):
    path = write(tmp_path, FLOW)
    (tmp_path / "in.jsonl").write_text('{"x": "1"}\n', encoding="utf-8")
    result = fmflow(tmp_path, command[0], path, *command[1:], "--model", "fats=replay:echo")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "--model fats=…" in result.stderr and "declares no model 'fats'; did you mean 'fast'?" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.jsonl").exists()


def test_cli_batch_and_render_take_the_replacement(tmp_path):
    path = write(tmp_path, FLOW)
    (tmp_path / "in.jsonl").write_text('{"x": "1"}\n{"x": "2"}\n', encoding="utf-8")
    batch = fmflow(tmp_path, "batch", path, "--input", "in.jsonl", "--output", "out.jsonl", "--ordered",
                   "--model", "fast=replay:echo", "--model", "other=replay:echo", "--model", "replay:echo")
    assert batch.returncode == 0, batch.stderr
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines == ['{"line": 1, "output": "asked 1 | other 1 | default 1"}',
                     '{"line": 2, "output": "asked 2 | other 2 | default 2"}']
    resumed = fmflow(tmp_path, "batch", path, "--input", "in.jsonl", "--output", "out.jsonl", "--resume",
                     "--model", "fast=replay:echo")
    assert resumed.returncode == 2 and "resume it with the same --model" in resumed.stderr
    render = fmflow(tmp_path, "render", path, "--prompt", "p", "-i", "x=1", "--json", "--model", "fast=ollama:llama3.2")
    assert render.returncode == 0, render.stderr
    assert '"model": {"name": "fast", "provider": "ollama", "model": "llama3.2", "temperature": 0.3' in render.stdout
