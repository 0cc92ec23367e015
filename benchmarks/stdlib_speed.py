"""How fast std/filters redacts personal data and removes near-duplicates, against the obvious baselines.

    python benchmarks/stdlib_speed.py [--mb 5] [--texts 10000] [--near 0.9] [--skip-dedupe]

redact_pii (MB/s, best of 3 rounds; both corpora built from the labelled
lines of tests/stdlib/pii_labelled.jsonl):

- "prose": each labelled line between paragraphs of prose without digits
  (about one piece of personal data per 2 KB), "dense": the lines alone;
- fmflow: ``redact_pii`` of std/filters;
- baseline 1: Presidio's pattern recognizers (presidio-analyzer: e-mail, credit
  card, IBAN, phone, IP, US SSN; no spaCy model is needed or loaded), then the
  spans replaced, on a slice of the corpus (it is slow); skipped, and said so,
  when presidio-analyzer is not installed (``pip install -e ".[dev]"``);
- baseline 2: the plain regex loop std/filters used before (three ``re.sub``).
  Recall per kind on the labelled set is printed for each, to read the speeds
  beside what each one finds.

near-dedupe of N short texts (seconds and peak memory, each side in a fresh
process, the model loaded before the clock starts):

- fmflow: ``dedupe(texts, near)`` — MiniLM vectors in batches, block-by-chunk
  matrix products;
- baseline: sentence-transformers ``encode`` of the same model folder, then the
  obvious greedy pass over the full N × N cosine matrix.

Timings are printed, never asserted. A few minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LABELLED = ROOT / "tests" / "stdlib" / "pii_labelled.jsonl"
PROSE = ("The committee reviewed the proposal in detail and asked the team to clarify the schedule. "
         "Everyone agreed that the documentation should be improved before the next release, and that "
         "the support staff would need more time to answer questions from customers. ")


def labelled() -> list[dict]:
    return [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]


def corpus(kind: str, megabytes: float) -> str:
    lines = [row["text"] for row in labelled()]
    unit = "\n".join((PROSE * 8 + line) if kind == "prose" else line for line in lines) + "\n"
    return unit * max(1, int(megabytes * 1e6 // len(unit)))


# ------------------------------------------------------------------------- redaction
def fmflow_redactor():
    from fmflow.resources import stdlib_module

    pii = stdlib_module("std_pii")
    return pii.redact, lambda text: [(f.kind, f.start, f.end) for f in pii.find_pii(text)]


def plain_regex_redactor():
    email = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
    phone = re.compile(r"(?<!\w)(?:\+?\d[\d ().-]{7,}\d)(?!\w)")
    card = re.compile(r"(?<!\d)(?:\d[ -]?){13,19}(?!\d)")
    patterns = (("EMAIL", email), ("CARD", card), ("PHONE", phone))

    def redact(text: str) -> str:
        for kind, pattern in patterns:
            text = pattern.sub(f"[{kind}]", text)
        return text

    return redact, lambda text: [(k, m.start(), m.end()) for k, p in patterns for m in p.finditer(text)]


def presidio_redactor():
    try:
        import tldextract
        from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, EmailRecognizer,
                                                              IbanRecognizer, IpRecognizer, PhoneRecognizer,
                                                              UsSsnRecognizer)
        from presidio_analyzer.predefined_recognizers.generic import email_recognizer
    except ImportError:
        return None
    # Its e-mail check looks domains up in the public suffix list: the copy inside tldextract, never fetched.
    offline = tldextract.TLDExtract(suffix_list_urls=())
    email_recognizer.tldextract = type("OfflineTld", (), {"extract": staticmethod(offline)})
    kinds = {"EMAIL_ADDRESS": "EMAIL", "CREDIT_CARD": "CARD", "IBAN_CODE": "IBAN", "PHONE_NUMBER": "PHONE",
             "IP_ADDRESS": "IP", "US_SSN": "SSN"}
    recognizers = [EmailRecognizer(), CreditCardRecognizer(), IbanRecognizer(), PhoneRecognizer(), IpRecognizer(),
                   UsSsnRecognizer()]

    def find(text: str):
        found = []
        for recognizer in recognizers:
            for result in recognizer.analyze(text, recognizer.supported_entities, None):
                found.append((kinds[result.entity_type], result.start, result.end))
        return found

    def redact(text: str) -> str:
        out, last = [], 0
        for kind, start, end in sorted(find(text), key=lambda f: (f[1], -f[2])):
            if start >= last:
                out += [text[last:start], f"[{kind}]"]
                last = end
        return "".join(out + [text[last:]])

    return redact, find


def recall(find) -> dict[str, float]:
    found, total = {}, {}
    for row in labelled():
        spans = find(row["text"])
        for piece in row["pii"]:
            start = row["text"].index(piece["text"])
            end = start + len(piece["text"])
            total[piece["kind"]] = total.get(piece["kind"], 0) + 1
            if any(k == piece["kind"] and s <= start and e >= end for k, s, e in spans):
                found[piece["kind"]] = found.get(piece["kind"], 0) + 1
    return {kind: found.get(kind, 0) / n for kind, n in sorted(total.items())}


def throughput(redact, text: str, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        redact(text)
        best = min(best, time.perf_counter() - started)
    return len(text.encode("utf-8")) / 1e6 / best


def bench_redaction(megabytes: float) -> None:
    sides = [("fmflow redact_pii", fmflow_redactor(), 1.0), ("plain regex loop", plain_regex_redactor(), 1.0)]
    presidio = presidio_redactor()
    if presidio is None:
        print("presidio-analyzer is not installed: that baseline is skipped (pip install presidio-analyzer)")
    else:
        sides.append(("Presidio recognizers", presidio, 0.05))
    print(f"\nredact_pii, MB/s (best of 3); recall per kind on {LABELLED.name}")
    speeds = {}
    for kind in ("prose", "dense"):
        for name, (redact, _find), share in sides:
            text = corpus(kind, megabytes * share)
            speeds[(name, kind)] = throughput(redact, text, rounds=3 if share == 1.0 else 1)
            print(f"  {kind:5} {name:22} {speeds[(name, kind)]:7.2f} MB/s  ({len(text) / 1e6:.2f} MB)")
    for name, (_redact, find), _share in sides:
        print(f"  recall {name:22} " + "  ".join(f"{k} {v:.2f}" for k, v in recall(find).items()))
    for kind in ("prose", "dense"):
        for name, _side, _share in sides[1:]:
            ratio = speeds[("fmflow redact_pii", kind)] / speeds[(name, kind)]
            print(f"  ratio fmflow / {name} ({kind}): {ratio:.1f}x")


# -------------------------------------------------------------------------- dedupe
def dedupe_texts(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    subjects = ["The invoice", "My order", "The refund", "Your password", "The server", "Our meeting", "The report",
                "This ticket", "The delivery", "The payment"]
    verbs = ["was delayed", "has been approved", "failed again", "needs a review", "is ready", "was cancelled",
             "arrived late", "looks wrong", "was updated", "cannot be found"]
    tails = ["today", "this morning", "after the update", "for the third time", "without notice", "last week",
             "as expected", "on Friday", "in March", "before noon"]
    texts = []
    for i in range(count):
        if texts and rng.random() < 0.3:  # a near-duplicate of an earlier text
            base = rng.choice(texts)
            texts.append(rng.choice([base.lower(), base.rstrip(".") + "!", base.replace("The ", "the "),
                                     base + " Thanks."]))
        else:
            texts.append(f"{rng.choice(subjects)} #{i} {rng.choice(verbs)} {rng.choice(tails)}.")
    return texts


def child(side: str, count: int, near: float) -> None:
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    texts = dedupe_texts(count)
    if side == "fmflow":
        from fmflow.resources import stdlib_module

        filters = stdlib_module("std_filters")
        filters.dedupe(["warm up", "the model"], near)
        loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        kept = filters.dedupe(texts, near)
    else:
        import numpy as np
        from fmflow.retrieval.embeddings import get_embedder
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(get_embedder("builtin:minilm").folder), device="cpu")
        model.encode(["warm up"])
        loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        unique = list(dict.fromkeys(texts))
        vectors = model.encode(unique, normalize_embeddings=True, convert_to_numpy=True)
        similar = vectors @ vectors.T  # the full N × N matrix
        kept_rows: list[int] = []
        for i in range(len(unique)):
            if not kept_rows or similar[i, kept_rows].max() < near:
                kept_rows.append(i)
        kept = [unique[i] for i in kept_rows]
        del np
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "kept": len(kept), "peak_mb": peak / 1024, "loaded_mb": loaded / 1024}))


def bench_dedupe(count: int, near: float) -> None:
    print(f"\nnear-dedupe of {count} short texts at cosine >= {near} (a fresh process each, model loaded first)")
    results = {}
    for side in ("fmflow", "sentence-transformers"):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, __file__, "--child", side, "--texts", str(count), "--near", str(near)],
                             capture_output=True, text=True, env=env, timeout=3600)
        if out.returncode != 0:
            print(f"  {side}: failed\n{out.stderr[-2000:]}")
            continue
        results[side] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[side]
        print(f"  {side:22} {r['seconds']:7.1f} s   kept {r['kept']:6}   peak RSS {r['peak_mb']:7.0f} MB "
              f"(+{r['peak_mb'] - r['loaded_mb']:.0f} MB over the loaded model)")
    if len(results) == 2:
        f, b = results["fmflow"], results["sentence-transformers"]
        print(f"  ratio time baseline / fmflow: {b['seconds'] / f['seconds']:.2f}x;  memory growth baseline / fmflow: "
              f"{(b['peak_mb'] - b['loaded_mb']) / max(1.0, f['peak_mb'] - f['loaded_mb']):.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=5.0, help="megabytes of text per redaction corpus")
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--near", type=float, default=0.9)
    parser.add_argument("--skip-dedupe", action="store_true")
    parser.add_argument("--child", choices=["fmflow", "sentence-transformers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.texts, args.near)
        return
    bench_redaction(args.mb)
    if not args.skip_dedupe:
        bench_dedupe(args.texts, args.near)


if __name__ == "__main__":
    main()
