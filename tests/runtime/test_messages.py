"""The messages a prompt sends (LANGUAGE.md §2): `history:` between the system text and
the template's message, and the reply's JSON instructions where `{{ output_format }}`
is written (once), else after the template. The scripted model records each request."""

from __future__ import annotations

import json

import pytest

from fmflow.runtime.errors import FlowRuntimeError
from fmflow.runtime.templates import OUTPUT_INSTRUCTIONS

from flowfiles import load

SCRIPTED = 'env("FMFLOW_TEST_PROVIDER", "scripted")'

CHAT = '''
    model m { provider: SCRIPTED }

    type Answer {
      ## The answer, in one sentence.
      text: str
    }

    prompt chat(question: str, turns: list[Message]) -> str {
      model: m
      system: "You are terse."
      history: turns
      template: "Q: {{ question }}"
    }

    prompt typed_chat(question: str, turns: list[Message]) -> Answer {
      model: m
      history: turns
      template: "Q: {{ question }}"
    }

    flow talk(question: str, turns: list[Message]) -> str {
      return chat(question, turns)
    }

    flow talk_typed(question: str, turns: list[Message]) -> Answer {
      return typed_chat(question, turns)
    }
'''.replace("SCRIPTED", SCRIPTED)

TURNS = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
         {"role": "tool", "content": "42"}]


def test_history_goes_between_the_system_text_and_the_template(tmp_path, scripted):
    provider = scripted(["Sure."])
    flow = load(tmp_path, CHAT, "talk", trace=False, cache=False)
    assert flow.run(question="And now?", turns=TURNS) == "Sure."
    assert provider.requests[0].messages == [
        {"role": "system", "content": "You are terse."}, *TURNS, {"role": "user", "content": "Q: And now?"}]


def test_history_without_a_system_text_comes_first_and_instructions_stay_last(tmp_path, scripted):
    provider = scripted(['{"text": "ok"}'])
    flow = load(tmp_path, CHAT, "talk_typed", trace=False, cache=False)
    assert flow.run(question="Why?", turns=TURNS[:2]).text == "ok"
    messages = provider.requests[0].messages
    assert messages[:2] == TURNS[:2]
    assert messages[2]["role"] == "user" and messages[2]["content"].startswith("Q: Why?\n\nReply with JSON only")
    assert len(messages) == 3


def test_an_empty_history_adds_nothing(tmp_path, scripted):
    provider = scripted(["x"])
    load(tmp_path, CHAT, "talk", trace=False, cache=False).run(question="q", turns=[])
    assert [m["role"] for m in provider.requests[0].messages] == ["system", "user"]


def test_history_written_in_the_flow_and_reask_keeps_it(tmp_path, scripted):
    provider = scripted(["not json", '{"text": "fine"}'])
    flow = load(tmp_path, '''
        model m { provider: SCRIPTED }
        type Answer { text: str }
        prompt answer(question: str, earlier: str) -> Answer {
          model: m
          history: [Message(role: "user", content: earlier), Message(role: "assistant", content: "Noted.")]
          template: "{{ question }}"
          on_fail: reask(1)
        }
        flow f(question: str) -> Answer {
          return answer(question, "I like tea.")
        }
    '''.replace("SCRIPTED", SCRIPTED), trace=False, cache=False)
    assert flow.run(question="What do I like?").text == "fine"
    first, second = provider.requests
    assert first.messages[:2] == [{"role": "user", "content": "I like tea."},
                                  {"role": "assistant", "content": "Noted."}]
    assert second.messages[:3] == first.messages  # the reask continues the same conversation
    assert second.messages[3] == {"role": "assistant", "content": "not json"}


def test_a_role_outside_the_four_stops_the_call_before_the_model(tmp_path, scripted):
    provider = scripted(["never"])
    flow = load(tmp_path, CHAT, "talk", trace=False, cache=False)
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(question="q", turns=[{"role": "bot", "content": "hi"}])
    assert str(info.value) == ("input 'turns[0].role': expected one of system, user, assistant, tool, "
                               'got a string ("bot")')
    assert provider.requests == []


def test_a_role_computed_in_the_flow_is_checked_when_it_runs(tmp_path, scripted):
    provider = scripted(["never"])
    flow = load(tmp_path, '''
        model m { provider: SCRIPTED }
        prompt p(q: str, who: str) -> str {
          model: m
          history: [Message(role: who, content: "hi")]
          template: "{{ q }}"
        }
        flow f(q: str, who: str) -> str {
          return p(q, who)
        }
    '''.replace("SCRIPTED", SCRIPTED), trace=False, cache=False)
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(q="q", who="narrator")
    assert "Message(…): role: expected one of system, user, assistant, tool, got str 'narrator'" in str(info.value)
    assert provider.requests == []


def test_history_from_json_data_is_validated_as_messages(tmp_path, scripted):
    provider = scripted(["ok"])
    flow = load(tmp_path, '''
        model m { provider: SCRIPTED }
        prompt p(q: str, turns: json) -> str {
          model: m
          history: turns
          template: "{{ q }}"
        }
        flow f(q: str, turns: json) -> str {
          return p(q, turns)
        }
    '''.replace("SCRIPTED", SCRIPTED), trace=False, cache=False)
    assert flow.run(q="q", turns=[{"role": "user", "content": "hi"}]) == "ok"
    assert provider.requests[0].messages[0] == {"role": "user", "content": "hi"}
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(q="q", turns=[{"role": "robot", "content": "hi"}])
    assert "the history of prompt 'p': [0].role: expected one of system, user, assistant, tool" in str(info.value)
    assert len(provider.requests) == 1


def test_agents_send_their_history_too(tmp_path, scripted):
    provider = scripted(["done"])
    flow = load(tmp_path, '''
        model m { provider: SCRIPTED }
        agent helper(task: str, turns: list[Message]) -> str {
          model: m
          system: "Help."
          history: turns
          template: "Task: {{ task }}"
        }
        flow f(task: str, turns: list[Message]) -> str {
          return helper(task, turns)
        }
    '''.replace("SCRIPTED", SCRIPTED), trace=False, cache=False)
    assert flow.run(task="t", turns=TURNS[:1]) == "done"
    assert [m["role"] for m in provider.requests[0].messages] == ["system", "user", "user"]
    assert provider.requests[0].messages[1] == TURNS[0]


# ------------------------------------------------------------ output_format

FORMATS = '''
    model m { provider: SCRIPTED }
    type Answer { text: str }

    prompt in_template(q: str) -> Answer {
      model: m
      template: """
        Answer the question.
        {{ output_format }}
        Question: {{ q }}
      """
    }

    prompt in_system(q: str) -> Answer {
      model: m
      system: "Reply as asked. {{ output_format }}"
      template: "Question: {{ q }}"
    }

    prompt appended(q: str) -> Answer {
      model: m
      system: "Reply as asked."
      template: "Question: {{ q }}"
    }

    prompt text(q: str) -> str {
      model: m
      template: "Question: {{ q }}"
    }

    flow f(q: str, which: str) -> str {
      if which == "template" {
        return in_template(q).text
      } elif which == "system" {
        return in_system(q).text
      } elif which == "appended" {
        return appended(q).text
      }
      return text(q)
    }
'''.replace("SCRIPTED", SCRIPTED)


def _messages(tmp_path, scripted, which: str) -> list[dict]:
    provider = scripted(['{"text": "ok"}'])
    assert load(tmp_path, FORMATS, trace=False, cache=False).run(q="why?", which=which) in ("ok", '{"text": "ok"}')
    return provider.requests[0].messages


def _instructions(request_schema: dict) -> str:
    return OUTPUT_INSTRUCTIONS(request_schema)


def test_output_format_in_the_template_puts_the_instructions_there_and_only_there(tmp_path, scripted):
    messages = _messages(tmp_path, scripted, "template")
    schema = {"properties": {"text": {"type": "string"}}, "required": ["text"], "type": "object",
              "additionalProperties": False}
    assert messages == [{"role": "user", "content": f"Answer the question.\n{_instructions(schema)}\n"
                                                    "Question: why?"}]
    assert sum(m["content"].count("Reply with JSON only") for m in messages) == 1


def test_output_format_in_the_system_text(tmp_path, scripted):
    system, user = _messages(tmp_path, scripted, "system")
    assert system["role"] == "system" and system["content"].startswith("Reply as asked. Reply with JSON only")
    assert user == {"role": "user", "content": "Question: why?"}


def test_without_output_format_the_instructions_follow_the_template(tmp_path, scripted):
    system, user = _messages(tmp_path, scripted, "appended")
    assert system == {"role": "system", "content": "Reply as asked."}
    assert user["content"].startswith("Question: why?\n\nReply with JSON only")
    assert json.loads(user["content"].split("JSON schema: ", 1)[1])["required"] == ["text"]


def test_a_str_prompt_gets_no_instructions(tmp_path, scripted):
    assert _messages(tmp_path, scripted, "text") == [{"role": "user", "content": "Question: why?"}]
