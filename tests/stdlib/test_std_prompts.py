"""std/prompts run for real against a scripted model: templates, parsing, checks and reasks,
best-of-N's concurrent uncached samples and its judge, the user's `default` model answering them."""

from __future__ import annotations

import asyncio
import json
import textwrap

import fmflow

HEADER = '''
    import "std/prompts"
    model default { provider: env("FMFLOW_TEST_PROVIDER", "scripted") }
'''


def load(tmp_path, body: str, **options):
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent(HEADER + body), encoding="utf-8")
    options.setdefault("cache", False)
    return fmflow.load(path, workdir=tmp_path, **options)


def user_text(request) -> str:
    return request.messages[-1]["content"]


def test_summarize_sends_a_long_summary_back(tmp_path, scripted):
    provider = scripted(["one two three four five six", "Retries back off."])
    flow = load(tmp_path, '''
        flow f(text: str) -> str {
          return summarize(text, 4)
        }
    ''')
    assert flow.run(text="Retries back off exponentially, with jitter, up to 30 s.") == "Retries back off."
    first, second = provider.requests
    assert "at most 4 words" in user_text(first) and "Retries back off exponentially" in user_text(first)
    assert first.messages[0]["role"] == "system" and "never add facts" in first.messages[0]["content"]
    assert "max_words(output, words)" in user_text(second)  # the reask names the failed check


def test_classify_keeps_asking_until_the_reply_is_a_label(tmp_path, scripted):
    provider = scripted(["Billing.", "billing"])
    flow = load(tmp_path, '''
        flow f(ticket: str) -> str {
          return classify(ticket, ["billing", "bug", "other"])
        }
    ''')
    assert flow.run(ticket="I was charged twice") == "billing"
    assert "- billing\n- bug\n- other" in user_text(provider.requests[0])
    assert len(provider.requests) == 2


def test_extract_fills_a_declared_type_and_asks_again_for_missing_fields(tmp_path, scripted):
    provider = scripted(['{"customer": "Ada"}', '```json\n{"customer": "Ada", "total": 41.5}\n```'])
    flow = load(tmp_path, '''
        type Invoice {
          customer: str
          total: float
        }
        flow f(text: str) -> Invoice {
          return extract(text, { customer: "the customer's name", total: "the amount due, a number" })
        }
    ''')
    result = flow.run(text="Ada owes 41.50 EUR.")
    assert (result.customer, result.total) == ("Ada", 41.5)
    asked = user_text(provider.requests[0])
    assert '- "customer": the customer\'s name\n- "total": the amount due, a number' in asked
    assert len(provider.requests) == 2


def test_judge_reads_a_verdict_with_a_lenient_enum(tmp_path, scripted):
    provider = scripted(['{"better": "B", "reason": "a is wrong"}'])
    flow = load(tmp_path, '''
        flow f(q: str, a: str, b: str) -> str {
          verdict = judge(q, a, b)
          return a if verdict.better == Preference.a else b
        }
    ''')
    assert flow.run(q="2+2?", a="5", b="4") == "4"
    request = provider.requests[0]
    assert request.temperature == 0
    assert "Answer a:\n5" in user_text(request) and "Answer b:\n4" in user_text(request)
    assert '"enum": ["a", "b", "tie"]' in json.dumps(request.json_schema)


def test_critique_then_revise(tmp_path, scripted):
    provider = scripted(['{"ok": false, "problems": ["it does not say the unit"]}', "It takes 30 seconds."])
    flow = load(tmp_path, '''
        flow f(task: str, draft: str) -> str {
          review = critique(task, draft)
          if review.ok {
            return draft
          }
          return revise(task, draft, review.problems)
        }
    ''')
    assert flow.run(task="Say how long a timeout is.", draft="It takes 30.") == "It takes 30 seconds."
    assert "- it does not say the unit" in user_text(provider.requests[1])


def test_a_critique_that_is_not_ok_must_name_a_problem(tmp_path, scripted):
    provider = scripted(['{"ok": false, "problems": []}', '{"ok": true, "problems": []}'])
    flow = load(tmp_path, '''
        flow f(task: str, draft: str) -> bool {
          return critique(task, draft).ok
        }
    ''')
    assert flow.run(task="t", draft="d") is True
    assert "output.ok or len(output.problems) > 0" in user_text(provider.requests[1])


def _best_of_script(picks: list[int]):
    """Samples answer "candidate N" (N counting every sample); the judge picks from ``picks`` in turn."""
    samples, judged = [], []

    async def answer(config, request):
        if request.json_schema is not None:   # pick_best
            judged.append(request)
            return json.dumps({"best": picks[len(judged) - 1], "reason": "clearest"})
        samples.append(request)
        n = len(samples)
        await asyncio.sleep(0.05)              # so that the samples are seen in flight together
        return f"candidate {n}"
    return answer, samples, judged


def test_best_of_samples_concurrently_uncached_and_keeps_the_judges_pick(tmp_path, scripted):
    answer, samples, judged = _best_of_script([2, 3])
    provider = scripted(answer)
    flow = load(tmp_path, '''
        flow f(task: str) -> str {
          return best_of(task, 3)
        }
    ''', cache=True)
    assert flow.run(task="Name a prime.") == "candidate 2"
    assert provider.max_in_flight == 3                          # the three samples at once
    assert {r.temperature for r in samples} == {0.9}
    listed = user_text(judged[0])
    assert all(f"Candidate {i}:\ncandidate {i}" in listed for i in (1, 2, 3))
    assert flow.run(task="Name a prime.") == "candidate 6"      # the cache is on: samples are asked anew
    assert len(samples) == 6 and len(judged) == 2


def test_best_of_sends_an_impossible_pick_back(tmp_path, scripted):
    answer, samples, judged = _best_of_script([7, 1])
    scripted(answer)
    flow = load(tmp_path, '''
        flow f(task: str) -> str {
          return best_of(task, 2)
        }
    ''')
    assert flow.run(task="t") in ("candidate 1", "candidate 2")
    assert "output.best <= len(candidates)" in user_text(judged[1])


def test_best_of_one_needs_no_judge(tmp_path, scripted):
    provider = scripted(["only"])
    flow = load(tmp_path, '''
        flow f(task: str) -> str {
          return best_of(task, 1)
        }
    ''')
    assert flow.run(task="t") == "only"
    assert len(provider.requests) == 1


def test_a_default_model_that_answers_only_imported_prompts_is_not_unused(tmp_path):
    path = tmp_path / "flow.fmflow"
    path.write_text(textwrap.dedent('''
        import "std/prompts"
        model default { provider: "openai", name: "gpt-4o-mini" }
        model spare { provider: "openai", name: "gpt-4o-mini" }
        flow f(text: str) -> str {
          return summarize(text, 50)
        }
    '''), encoding="utf-8")
    unused = [d.message for d in fmflow.check(path) if d.code == "W501"]
    assert unused == ["model 'spare' is never used"]


def test_std_prompts_check_clean_against_their_lock():
    from fmflow.resources import stdlib_dir

    stdlib = stdlib_dir()
    errors = [d for d in fmflow.check(stdlib / "prompts.fmflow") if d.severity.name == "ERROR"]
    assert errors == []
    lock = json.loads((stdlib / "fmflow.lock").read_text(encoding="utf-8"))
    assert any("summarize@1" in entries for entries in lock["files"].values())


def test_the_std_prompts_doc_comments_reach_the_model(tmp_path, scripted):
    provider = scripted(['{"ok": true, "problems": []}', "A short summary."])
    flow = load(tmp_path, '''
        flow f(task: str, draft: str) -> str {
          ok = critique(task, draft).ok
          return summarize(draft) if ok else draft
        }
    ''')
    assert flow.run(task="t", draft="d") == "A short summary."
    schema = provider.requests[0].json_schema
    assert schema["properties"]["ok"]["description"] == "true when the draft needs no change"
    assert "at most 60 words" in user_text(provider.requests[1])  # the default of `words`
