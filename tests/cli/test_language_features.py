"""Doc comments, defaults, history, output_format, template filters and lenient enums
through `python -m fmflow check / run / fmt` in a subprocess, as users run them."""

from __future__ import annotations

import json

from clitools import fmflow_cmd, write

SUPPORT = '''\
import "std/filters"

## The model that answers: a replay of recorded answers.
model desk {
  provider: "replay"
  options: { responses: ["The category is Billing.", "Sure, I can help with that."] }
}

## Where a ticket goes.
enum Category {
  ## Invoices, payments, refunds.
  billing
  bug
}

prompt classify(ticket: str) -> Category {
  model: desk
  template: """
    Classify this ticket: {{ ticket | redact_pii }}
    {{ output_format }}
  """
}

prompt reply(ticket: str, category: Category, turns: list[Message] = []) -> str {
  model: desk
  system: "You answer {{ category }} tickets."
  history: turns
  template: "{{ ticket | redact_pii | truncate(60) }}"
}

## Classifies a ticket, then answers it.
flow support(
  ## The customer's message.
  ticket: str,
  turns: list[Message] = [Message(role: "user", content: "Hello")],
  signature: str = "-- the desk",
) -> str {
  category = classify(ticket)
  if category == Category.billing {
    return reply(ticket, category, turns) + " " + signature
  }
  return "forwarded"
}
'''


def test_check_accepts_the_new_language(tmp_path):
    write(tmp_path, "support.fmflow", SUPPORT)
    result = fmflow_cmd(tmp_path, "check", "support.fmflow")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "" and "no problems" in (result.stdout + result.stderr)


def test_run_leaves_defaults_out_and_reads_an_enum_from_prose(tmp_path):
    write(tmp_path, "support.fmflow", SUPPORT)
    result = fmflow_cmd(tmp_path, "run", "support.fmflow", "-i", "ticket=Refund for ann@example.com", "--json",
                        "--no-cache")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "Sure, I can help with that. -- the desk"
    trace = next((tmp_path / ".fmflow" / "runs").glob("*.jsonl"))
    records = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    calls = [r for r in records if r.get("kind") == "model"]
    assert calls and all(set(c["prompt"]) == {"name", "version", "hash", "model_hash"} for c in calls)


def test_run_takes_a_history_as_json_input(tmp_path):
    write(tmp_path, "support.fmflow", SUPPORT)
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    inputs = {"ticket": "Refund", "turns": turns, "signature": "-- Ann"}
    result = fmflow_cmd(tmp_path, "run", "support.fmflow", "--input-json", json.dumps(inputs), "--no-cache")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Sure, I can help with that. -- Ann"
    bad = dict(inputs, turns=[{"role": "customer", "content": "Hi"}])
    result = fmflow_cmd(tmp_path, "run", "support.fmflow", "--input-json", json.dumps(bad))
    assert result.returncode == 2
    assert ("input 'turns[0].role': expected one of system, user, assistant, tool, got a string (\"customer\")"
            in result.stderr)  # a usage error, before any call


def test_check_reports_the_new_checks_at_their_places(tmp_path):
    broken = (SUPPORT.replace("{{ ticket | redact_pii }}", "{{ ticket | redact_pi }} {{ tiket }}")
              .replace('signature: str = "-- the desk"', "signature: str = 42")
              .replace('system: "You answer {{ category }} tickets."', 'system: "{{ output_format }}"'))
    write(tmp_path, "support.fmflow", broken)
    result = fmflow_cmd(tmp_path, "check", "support.fmflow", "--format", "json")
    assert result.returncode == 1
    found = [(d["code"], d["line"], d["message"]) for d in json.loads(result.stdout)]
    assert found == [
        ("E202", 19, "template of prompt 'classify' uses the filter 'redact_pi', which is neither declared "
                     "nor one of Jinja's"),
        ("E202", 19, "template of prompt 'classify' uses 'tiket', which is not a parameter"),
        ("E202", 26, "template of prompt 'reply' uses 'output_format', but prompt 'reply' returns str"),
        ("E201", 36, "the default of parameter 'signature' expects str, got int"),
    ]


def test_fmt_keeps_doc_comments_and_defaults(tmp_path):
    path = write(tmp_path, "support.fmflow", SUPPORT.replace("  ticket: str,\n  turns", "  ticket: str, turns"))
    result = fmflow_cmd(tmp_path, "fmt", "support.fmflow")
    assert result.returncode == 0, result.stderr
    assert path.read_text(encoding="utf-8") == SUPPORT
    assert fmflow_cmd(tmp_path, "fmt", "--check", "support.fmflow").returncode == 0
