"""examples/finetune runs offline from a fresh copy: keep, near-dedupe, anonymise, map through a flow, embed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from test_batch_cli import ROOT, fmflow, no_traceback

EXAMPLE = ROOT / "examples" / "finetune"


def test_the_example_prepares_a_fine_tuning_set(tmp_path):
    from fmflow.retrieval.store import collection, open_store

    work = tmp_path / "finetune"
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("out", ".fmflow"))
    result = fmflow(work, "pipeline", "prepare.fmflow")
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    examples = [json.loads(line) for line in (work / "out/train.jsonl").read_text(encoding="utf-8").splitlines()]
    raw = [json.loads(line) for line in (work / "data/raw.jsonl").read_text(encoding="utf-8").splitlines()]
    prompts = [e["prompt"] for e in examples]
    text = json.dumps(examples)
    # kept: answered English tickets; dropped: the short one, the French one, the unsafe one
    assert not any("Comment changer" in p or p.endswith(": ok") or "bomb" in p for p in prompts)
    # near-duplicates: one of each paraphrased pair, the first
    assert "Customer question: How do I reset my password?" in prompts
    assert "Customer question: How can I reset my password?" not in prompts
    assert "Customer question: Is there a student discount?" not in prompts
    assert "Customer question: Where can I download the invoice?" not in prompts
    # anonymised
    assert "jane.doe@example.com" not in text and "555 0134" not in text and "4111" not in text
    assert "[EMAIL]" in text and "[PHONE]" in text
    # mapped through the flow, in source order
    assert all(p.startswith("Customer question: ") for p in prompts) and all(e["completion"] for e in examples)
    answers = [r["answer"] for r in raw]
    positions = [answers.index(e["completion"]) for e in examples]
    assert positions == sorted(positions)
    assert len(examples) == 14 and "wrote 14 to" in result.stderr
    # embedded, once per example, and again not twice
    assert fmflow(work, "pipeline", "prepare.fmflow").returncode == 0
    store = collection(open_store(str(work / ".fmflow/store")), "support-sft", embedding=None)
    assert store.count() == 14
    assert not Path(str(work / "out/train.jsonl") + ".errors.jsonl").exists()
