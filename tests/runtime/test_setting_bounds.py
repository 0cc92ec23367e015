"""Settings known only when a flow runs (`env(…)`) obey the same bounds as literals do at check time.

The bounds live in one table (fmflow.checks.blocks.BLOCKS); the checker
reports a literal out of bounds as E201, the runtime stops a run whose
evaluated setting is out of bounds with a message naming the key, the
declaration and the range, before any model is called.
"""

from __future__ import annotations

import pytest

from fmflow.checks.blocks import BLOCKS, settings_problem
from fmflow.runtime.errors import FlowRuntimeError

from flowfiles import load

PROMPT = '''
model m {{
  provider: "replay"
  options: {{ responses: [{{ text: "hi" }}] }}
  {setting}
}}

prompt p(x: str) -> str {{
  model: m
  template: "{{{{ x }}}}"
  {override}
}}

flow f(x: str) -> str {{
  return p(x)
}}
'''


@pytest.mark.parametrize("setting, value, message", [
    ('concurrency: env("FM_SETTING", 4)', "0", "'concurrency' of model 'm' must be at least 1, got 0"),
    ('retry: env("FM_SETTING", 2)', "-5", "'retry' of model 'm' must be at least 0, got -5"),
    ('max_tokens: env("FM_SETTING", 64)', "0", "'max_tokens' of model 'm' must be at least 1, got 0"),
    ('temperature: env("FM_SETTING", 0.5)', "-1", "'temperature' of model 'm' must be from 0 to 2, got -1.0"),
])
def test_a_model_setting_from_the_environment_out_of_bounds_stops_the_run(tmp_path, monkeypatch, setting, value,
                                                                          message):
    flow = load(tmp_path, PROMPT.format(setting=setting, override=""))
    assert flow.run(x="a") == "hi"  # the default is in bounds
    monkeypatch.setenv("FM_SETTING", value)
    flow = load(tmp_path, PROMPT.format(setting=setting, override=""))
    with pytest.raises(FlowRuntimeError, match=message.replace("(", r"\(")):
        flow.run(x="a")


def test_a_prompt_override_from_the_environment_out_of_bounds_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("FM_SETTING", "0")
    flow = load(tmp_path, PROMPT.format(setting="", override='max_tokens: env("FM_SETTING", 64)'))
    with pytest.raises(FlowRuntimeError, match="'max_tokens' of prompt 'p' must be at least 1, got 0"):
        flow.run(x="a")


def test_an_agent_max_steps_from_the_environment_is_evaluated_and_bounded(tmp_path, monkeypatch):
    text = '''
    model m {
      provider: "replay"
      options: { responses: [{ text: "done" }] }
    }

    agent a(x: str) -> str {
      model: m
      template: "{{ x }}"
      max_steps: env("FM_STEPS", 3)
    }

    flow f(x: str) -> str {
      return a(x)
    }
    '''
    assert load(tmp_path, text).run(x="a") == "done"  # env() with its default, not a literal
    monkeypatch.setenv("FM_STEPS", "0")
    with pytest.raises(FlowRuntimeError, match="'max_steps' of agent 'a' must be at least 1, got 0"):
        load(tmp_path, text).run(x="a")


def test_a_retriever_k_computed_at_run_time_is_bounded(tmp_path):
    text = '''
    retriever kb {
      collection: "docs"
    }

    flow f(x: str, n: int) -> list[Doc] {
      return kb(x, k: n)
    }
    '''
    with pytest.raises(FlowRuntimeError, match="'k' of retriever 'kb' must be at least 1, got 0"):
        load(tmp_path, text).run(x="a", n=0)


def test_every_bound_is_stated_in_the_table():
    bounded = {(kind, key) for kind, keys in BLOCKS.items() for key, spec in keys.items() if spec.bound}
    assert {("model", "concurrency"), ("model", "retry"), ("model", "rate"), ("model", "timeout"),
            ("model", "max_tokens"), ("model", "temperature"), ("prompt", "max_tokens"), ("agent", "max_steps"),
            ("retriever", "k"), ("retriever", "min_score")} <= bounded
    assert settings_problem("model", "m", {"rate": (0, 60.0)}) == \
        "'rate' of model 'm' must be at least 1 per period, got 0/60s"
    assert settings_problem("model", "m", {"timeout": 0.0}) == \
        "'timeout' of model 'm' must be more than 0 seconds, got 0.0"
    assert settings_problem("model", "m", {"concurrency": 1, "cache": True, "name": "x"}) is None
