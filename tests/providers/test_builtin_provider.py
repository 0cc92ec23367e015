"""`provider: "builtin"`, model `extractive`: answers with the prompt's most relevant sentences."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

import fmflow
from fmflow.providers import ChatRequest, ModelConfig, ProviderError, get_provider
from fmflow.providers.builtin import BuiltinProvider, extract_answer, find_question, split_sentences

PASSAGES = """\
[d1] The cache keeps the answers of prompts whose temperature is zero.
[d2] Refunds are issued within fourteen days of the purchase. Shipping takes a week.
[d3] To retry a failing prompt, declare on_fail: reask(2) in the prompt.
[d4] Models are declared once and shared by every prompt of the file.
"""


def cfg(name="extractive", **options) -> ModelConfig:
    return ModelConfig(name="m", provider="builtin", model=name, options=options, source="/flows/app.fmflow")


def ask(user: str, system: str | None = None, config: ModelConfig | None = None, **kwargs):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    request = ChatRequest(messages=messages, **kwargs)
    return asyncio.run(BuiltinProvider().complete(config or cfg(), request))


def test_registered_as_builtin():
    assert isinstance(get_provider("builtin"), BuiltinProvider)


def test_ranking_picks_the_passage_that_answers():
    reply = ask(PASSAGES + "\nQuestion: How do I retry a prompt that fails?", config=cfg(sentences=1))
    assert reply.text == "[d3] To retry a failing prompt, declare on_fail: reask(2) in the prompt."
    reply = ask(PASSAGES + "\nWhen are refunds issued?", config=cfg(sentences=1))
    assert reply.text == "[d2] Refunds are issued within fourteen days of the purchase."


def test_sentences_keep_their_original_order():
    text = ("The retry policy waits between attempts.\n"
            "Shipping takes a week to arrive.\n"
            "A failing prompt is retried by declaring on_fail: reask(2) on the prompt.\n"
            "How do I retry a prompt?")
    # The third sentence ranks first (retry + prompt), the first second (retry only) ...
    assert ask(text, config=cfg(sentences=1)).text == (
        "A failing prompt is retried by declaring on_fail: reask(2) on the prompt.")
    # ... and the answer keeps them in the order of the prompt.
    assert ask(text).text == ("The retry policy waits between attempts. "
                              "A failing prompt is retried by declaring on_fail: reask(2) on the prompt.")


def test_sentences_option():
    question = "\nHow are prompts and models declared, and are refunds issued?"
    assert len(split_sentences(ask(PASSAGES + question, config=cfg(sentences=1)).text)) == 1
    three = ask(PASSAGES + question, config=cfg(sentences=3)).text
    assert split_sentences(three) == [
        "[d2] Refunds are issued within fourteen days of the purchase.",
        "[d3] To retry a failing prompt, declare on_fail: reask(2) in the prompt.",
        "[d4] Models are declared once and shared by every prompt of the file.",
    ]
    with pytest.raises(ProviderError, match="options.sentences must be a whole number"):
        ask(PASSAGES + question, config=cfg(sentences=0))


def test_question_is_the_last_question_else_the_last_line():
    assert find_question("Some context here.\nWhat is it? Answer in one sentence.") == "What is it?"
    assert find_question("Some context here.\n\nSummarise the refund policy.\n\n") == "Summarise the refund policy."
    assert split_sentences("1. First point here. Second one!\n- a bullet line\n  * another") == [
        "First point here.", "Second one!", "a bullet line", "another"]


def test_system_sentences_are_candidates_and_the_question_is_not():
    reply = ask("Question: how long do refunds take?", system="Refunds take fourteen days to arrive.")
    assert reply.text == "Refunds take fourteen days to arrive."
    assert extract_answer([{"role": "user", "content": "How long do refunds take?"}]) == ""


def test_no_overlap_answers_the_first_sentence():
    reply = ask(PASSAGES + "\nWhat colour is the sky?")
    assert reply.text == "[d1] The cache keeps the answers of prompts whose temperature is zero."


def test_short_fragments_are_not_answers():
    reply = ask("Retry.\nRetry it!\nA prompt may retry after a failure.\nHow do I retry?", config=cfg(sentences=3))
    assert reply.text == "A prompt may retry after a failure."


def test_tokens_are_words_and_on_text_gets_the_answer():
    pieces: list[str] = []
    reply = ask("Refunds take fourteen days.\nHow long do refunds take?", on_text=pieces.append)
    assert reply.text == "Refunds take fourteen days."
    assert (reply.tokens_in, reply.tokens_out) == (9, 4)
    assert pieces == [reply.text]
    assert reply.model == "builtin:extractive"


def test_typed_output_is_a_clear_error():
    with pytest.raises(ProviderError) as exc:
        ask(PASSAGES + "\nHow do I retry?", json_schema={"type": "object"}, schema_name="answer")
    message = str(exc.value)
    assert not exc.value.retryable
    assert "builtin:extractive cannot produce structured output" in message
    assert "prompt 'answer'" in message and "`-> str`" in message and "another model" in message


def test_unknown_builtin_model_lists_the_builtin_models():
    with pytest.raises(ProviderError) as exc:
        ask("hello there friend", config=cfg("gpt-4o"))
    assert "'gpt-4o'" in str(exc.value) and "the builtin models are: extractive" in str(exc.value)
    assert not exc.value.retryable


FLOW = '''
model m { provider: "builtin", name: "extractive" }

prompt answer(question: str, passages: list[str]) -> str {
  model: m
  system: """You answer only from the passages given."""
  template: """
    Passages:
    {% for p in passages %}- {{ p }}
    {% endfor %}
    Question: {{ question }}
  """
}

flow qa(question: str, passages: list[str]) -> str {
  return answer(question: question, passages: passages)
}
'''


def test_through_a_flow(tmp_path):
    path = tmp_path / "qa.fmflow"
    path.write_text(textwrap.dedent(FLOW), encoding="utf-8")
    flow = fmflow.load(path, workdir=tmp_path)
    passages = [
        "Flows are checked before they run.",
        "A prompt retries with on_fail: reask(2) when its reply fails a check.",
        "Retrievers read a Chroma collection. Refunds are issued within fourteen days.",
    ]
    assert flow.run(question="When are refunds issued?", passages=passages) == (
        "Refunds are issued within fourteen days.")
    assert flow.run(question="How does a prompt retry when a check fails?", passages=passages) == (
        "Flows are checked before they run. "  # list markers are not part of the sentences
        "A prompt retries with on_fail: reask(2) when its reply fails a check.")


def test_typed_prompt_through_a_flow_fails_clearly(tmp_path):
    path = tmp_path / "typed.fmflow"
    path.write_text(textwrap.dedent('''
        model m { provider: "builtin", name: "extractive" }
        type Answer {
          text: str
        }
        prompt answer(question: str) -> Answer {
          model: m
          template: "Refunds take fourteen days. {{ question }}"
        }
        flow qa(question: str) -> Answer {
          return answer(question: question)
        }
    '''), encoding="utf-8")
    flow = fmflow.load(path, workdir=tmp_path)
    with pytest.raises(Exception) as exc:
        flow.run(question="How long do refunds take?")
    assert "builtin:extractive cannot produce structured output" in str(exc.value)


def test_a_newline_inside_a_paragraph_does_not_end_a_sentence():
    """Passages wrapped at a width keep whole sentences; list items and headings still stand alone."""
    passage = ("To retry a failed prompt, give it an `on_fail` policy. `on_fail: retry(2)` asks again with the same\n"
               "messages. `on_fail: raise` stops the flow.")
    assert split_sentences(passage) == [
        "To retry a failed prompt, give it an `on_fail` policy.",
        "`on_fail: retry(2)` asks again with the same messages.",
        "`on_fail: raise` stops the flow."]
    listed = "Retries:\n- retry asks again\n- reask sends the reason\n# Caching\nReplies are cached\non disk."
    assert split_sentences(listed) == ["Retries:", "retry asks again", "reask sends the reason",
                                       "Replies are cached on disk."]
    answer = extract_answer([{"role": "user", "content": "[1] " + passage + "\n[2] Unrelated text about caching here.\n\n"
                                                          "Question: How do I retry a failed prompt?"}])
    assert answer.endswith("with the same messages."), answer
