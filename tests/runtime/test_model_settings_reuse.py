"""A model declaration written with literals is evaluated once per program; one that reads the
environment (env()) is evaluated again by every run, which sees the environment of its time."""

from __future__ import annotations

from flowfiles import load

FLOW = '''
model fixed {
  provider: "replay"
  options: { responses: ["same"], cycle: true }
}

model from_env {
  provider: "replay"
  options: { responses: [env("FMFLOW_TEST_REPLY")], cycle: true }
}

prompt ask_fixed(q: str) -> str {
  model: fixed
  template: "{{ q }}"
}

prompt ask_env(q: str) -> str {
  model: from_env
  template: "{{ q }}"
}

flow both(q: str) -> str {
  a = ask_fixed(q: q)
  b = ask_env(q: q)
  return a + "/" + b
}
'''


def test_each_run_reads_the_environment_its_model_names(tmp_path, monkeypatch):
    flow = load(tmp_path, FLOW, cache=False, trace=False)
    monkeypatch.setenv("FMFLOW_TEST_REPLY", "first")
    assert flow.run(q="x") == "same/first"
    monkeypatch.setenv("FMFLOW_TEST_REPLY", "second")
    assert flow.run(q="x") == "same/second"
    memo = flow.program.memo
    kept = [key for key in memo if isinstance(key, tuple) and key[0] == "model"]
    assert len(kept) == 1   # only the literal model's settings are kept between runs
