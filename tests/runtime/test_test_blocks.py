"""`test` blocks below the call level (LANGUAGE.md §7): `models:` scripts and `calls`, through the API."""

from __future__ import annotations

import fmflow
from flowfiles import write

TYPED = '''
    model fast {
      provider: "openai"
      name: "gpt-4o-mini"
      api_key_env: "FMFLOW_TEST_NO_SUCH_KEY"
    }
    type Ok {
      ok: bool
      note: str
    }
    prompt answer(q: str) -> Ok {
      model: fast
      template: "Answer {{ q }}"
      check: [len(output.note) > 0]
      on_fail: reask(2)
    }
    flow ask(q: str) -> Ok {
      return answer(q)
    }
'''


def outcomes(path, **options):
    report = fmflow.run_tests(path, **options)
    return {o.name: o for o in report.outcomes}


def test_scripted_replies_run_parsing_checks_and_reask(tmp_path):
    path = write(tmp_path, TYPED + '''
        test reasks_twice {
          flow: ask
          input: { q: "why?" }
          models: { fast: ["not json", "{\\"ok\\": true, \\"note\\": \\"\\"}", "{\\"ok\\": true, \\"note\\": \\"because\\"}"] }
          expect: [output.note == "because", calls["answer"] == 3, calls["ask"] == 1]
        }
        test gives_up {
          flow: ask
          input: { q: "why?" }
          models: { fast: ["no", "no", "no"] }
          expect: [output.ok]
        }
    ''')
    found = outcomes(path)
    assert found["reasks_twice"].passed, (found["reasks_twice"].error, found["reasks_twice"].failures)
    assert not found["gives_up"].passed
    assert "prompt 'answer': the model's answer was rejected" in found["gives_up"].error


def test_running_out_of_replies_fails_the_test_naming_the_model(tmp_path):
    path = write(tmp_path, TYPED + '''
        test too_few {
          flow: ask
          input: { q: "why?" }
          models: { fast: ["not json"] }
          expect: [output.ok]
        }
    ''')
    outcome = outcomes(path)["too_few"]
    assert not outcome.passed
    assert ("model 'fast' has no more scripted replies: test 'too_few' gives 1, and prompt 'answer' asked "
            "for reply 2") in outcome.error


def test_an_unmocked_unscripted_prompt_is_an_error_naming_it_and_its_model(tmp_path):
    path = write(tmp_path, TYPED + '''
        test neither {
          flow: ask
          input: { q: "why?" }
          expect: [output.ok]
        }
    ''')
    outcome = outcomes(path)["neither"]
    assert "prompt 'answer' is called but not mocked, and its model 'fast' is not scripted" in outcome.error
    assert "fmflow test --record" in outcome.error


def test_a_mock_wins_over_a_script_and_calls_count_mocked_calls(tmp_path):
    path = write(tmp_path, TYPED + '''
        test mocked {
          flow: ask
          input: { q: "why?" }
          mock: { answer: { ok: false, note: "mocked" } }
          models: { fast: [] }
          expect: [output.note == "mocked", calls["answer"] == 1]
        }
    ''')
    outcome = outcomes(path)["mocked"]
    assert outcome.passed, (outcome.error, outcome.failures)


AGENT = '''
    model planner {
      provider: "openai"
      name: "gpt-4o-mini"
      api_key_env: "FMFLOW_TEST_NO_SUCH_KEY"
    }
    tool word_count(text: str) -> int = python("counting:word_count")
    agent counter(text: str) -> str {
      model: planner
      tools: [word_count]
      max_steps: 3
      template: "How many words in: {{ text }}"
    }
    flow count(text: str) -> str {
      return counter(text)
    }
'''


def test_an_agent_loop_runs_with_scripted_tool_calls_and_real_tools(tmp_path):
    (tmp_path / "counting.py").write_text("def word_count(text):\n    return len(text.split())\n", encoding="utf-8")
    path = write(tmp_path, AGENT + '''
        test counts_with_the_tool {
          flow: count
          input: { text: "a b c" }
          models: {
            planner: [
              { tool_calls: [{ name: "word_count", arguments: { text: "a b c" } }] },
              { tool_calls: [{ name: "word_count", arguments: {} }] },
              "three words",
            ]
          }
          expect: [output == "three words", calls["word_count"] == 1, calls["counter"] == 3]
        }
    ''')
    outcome = outcomes(path)["counts_with_the_tool"]
    assert outcome.passed, (outcome.error, outcome.failures)


def test_the_default_model_may_be_scripted_without_being_declared(tmp_path, capsys):
    path = write(tmp_path, '''
        prompt shout(x: str) -> str {
          template: "Shout {{ x }}"
        }
        flow f(x: str) -> str {
          return shout(x) + "!"
        }
        test scripted_default {
          flow: f
          input: { x: "hi" }
          models: { default: ["HI"] }
          expect: [output == "HI!", calls["shout"] == 1, calls["f"] == 1]
        }
    ''')
    outcome = outcomes(path)["scripted_default"]
    assert outcome.passed, (outcome.error, outcome.failures)
    assert "builtin:extractive" not in capsys.readouterr().err  # no notice about a model nobody asked


def test_a_model_of_an_imported_file_is_scripted_by_its_name(tmp_path):
    write(tmp_path, '''
        model shared {
          provider: "openai"
          name: "gpt-4o-mini"
        }
        prompt greet(name: str) -> str {
          model: shared
          template: "Greet {{ name }}"
        }
    ''', "lib.fmflow")
    path = write(tmp_path, '''
        import "./lib.fmflow"
        flow hello(name: str) -> str {
          return greet(name)
        }
        test greets {
          flow: hello
          input: { name: "Ada" }
          models: { shared: ["Hello, Ada"] }
          expect: [output == "Hello, Ada", calls["hello"] == 1, calls["greet"] == 1]
        }
    ''')
    outcome = outcomes(path)["greets"]
    assert outcome.passed, (outcome.error, outcome.failures)


def test_calls_of_callables_never_called_are_zero(tmp_path):
    path = write(tmp_path, TYPED + '''
        prompt unused(q: str) -> str {
          model: fast
          template: "{{ q }}"
        }
        test zero {
          flow: ask
          input: { q: "x" }
          models: { fast: ["{\\"ok\\": true, \\"note\\": \\"n\\"}"] }
          expect: [calls["unused"] == 0, calls["answer"] == 1]
        }
    ''')
    outcome = outcomes(path)["zero"]
    assert outcome.passed, (outcome.error, outcome.failures)


def test_each_test_starts_its_scripts_over(tmp_path):
    block = '''
        test run_{n} {{
          flow: ask
          input: {{ q: "x" }}
          models: {{ fast: ["{{\\"ok\\": true, \\"note\\": \\"n{n}\\"}}"] }}
          expect: [output.note == "n{n}"]
        }}
    '''
    path = write(tmp_path, TYPED + block.format(n=1) + block.format(n=2))
    assert all(o.passed for o in outcomes(path).values())


def test_names_runs_only_the_tests_named_and_an_unknown_name_says_which_there_are(tmp_path):
    import pytest

    path = write(tmp_path, TYPED + '''
        test first {
          flow: ask
          input: { q: "why?" }
          models: { fast: ["{\\"ok\\": true, \\"note\\": \\"a\\"}"] }
          expect: [output.note == "a"]
        }
        test second {
          flow: ask
          input: { q: "why?" }
          models: { fast: ["{\\"ok\\": true, \\"note\\": \\"b\\"}"] }
          expect: [output.note == "b"]
        }
    ''')
    assert list(outcomes(path, names=["second"])) == ["second"]
    assert list(outcomes(path)) == ["first", "second"]
    with pytest.raises(ValueError, match=r"no test 'secnod' in .*; did you mean 'second'\?"):
        fmflow.run_tests(path, names=["secnod"])
    with pytest.raises(TypeError, match="a list of test names"):
        fmflow.run_tests(path, names="second")
