"""How `fmflow index` scales with the size of one file: time proportional to it, memory bounded.

    python benchmarks/index_scale.py [--mb 50] [--small-mb 5] [--sample 2000] [--embedding SPEC]
                                     [--skip-chunking] [--skip-index]

1. Chunking alone (`iter_chunks`, default sizes 1000/150) of a --mb text in
   three shapes: prose (paragraphs of sentences), one paragraph without a
   sentence end, one word without a space. Seconds and MB/s per shape: the
   three should be of the same order (no shape is quadratic).
2. `fmflow index FILE` as users run it (a subprocess, stderr not a terminal,
   `--embedding`, default `builtin:minilm`) on one prose file of --small-mb
   and one of --mb: wall seconds, chunks/s, the peak resident memory of the
   process, and the ratio of the two times against the ratio of the sizes
   (1.00 = exactly linear). Its progress lines are shown as they come. With
   MiniLM the time is almost all embedding; `--embedding hf:FOLDER` with a
   small local encoder measures the rest of the pipeline (reading, chunking,
   Chroma) at full size in minutes.
3. With `builtin:minilm`, the baseline of benchmarks/embedding_speed.py, measured in the same run:
   sentence-transformers `encode(chunks, normalize_embeddings=True)` on
   --sample chunks of the big file (an encoder's time per chunk does not
   depend on the file's size, so a sample gives its rate), against the
   chunks/s of the whole `fmflow index` (read, chunk, embed, store): the
   target is "at least as fast" (ratio >= 1.0).

Timings are printed, never asserted. With the defaults the run is long:
MiniLM embeds every one of the 50 MB file's ~73,000 chunks (and the 5 MB
file's); `--skip-index` runs only part 1 (a few minutes).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, Path(__file__).resolve().parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from embedding_speed import WORDS, make_texts  # noqa: E402  (the text the embedding figures use)


def prose(megabytes: float) -> str:
    """Paragraphs of 6 sentences of 8-25 words, up to the size asked for."""
    paragraphs, size, seed = [], 0, 0
    while size < megabytes * 1_000_000:
        paragraph = " ".join(make_texts(6, 8, 25, seed=seed))
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
        seed += 1
    return "\n\n".join(paragraphs)


def no_sentence_end(megabytes: float) -> str:
    words, size, i = [], 0, 0
    while size < megabytes * 1_000_000:
        word = WORDS[(i * 7919) % len(WORDS)]
        words.append(word)
        size += len(word) + 1
        i += 1
    return " ".join(words)


def chunking(megabytes: float) -> None:
    from fmflow.retrieval.chunking import iter_chunks

    print(f"1. chunking alone, {megabytes:g} MB of text (iter_chunks, 1000/150)")
    for shape, make in (("prose", prose), ("one paragraph, no sentence end", no_sentence_end),
                        ("one word, no space", lambda mb: "x" * int(mb * 1_000_000))):
        text = make(megabytes)
        started = time.perf_counter()
        chunks = sum(1 for _ in iter_chunks(text))
        seconds = time.perf_counter() - started
        print(f"  {shape:<32} {seconds:7.1f} s  {len(text) / 1e6 / seconds:6.2f} MB/s  ({chunks} chunks)")
    print()


def index_file(path: Path, store: Path, embedding: str) -> tuple[float, int, float]:
    """(wall seconds, chunks, peak resident MB) of `fmflow index FILE` in a subprocess."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               FMFLOW_PROGRESS_SECONDS="30")
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "fmflow", "index", str(path), "--collection", "scale",
                                "--store", str(store), "--embedding", embedding], cwd=path.parent, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in process.stderr:  # the progress lines, as they come
        print("    " + line.rstrip(), flush=True)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"fmflow index failed ({process.returncode}): {stdout}")
    chunks = int(stdout.split(" chunks")[0].split(", ")[-1])
    peak = usage.ru_maxrss / (1024 if sys.platform != "darwin" else 1024 * 1024)  # KB on Linux, bytes on macOS
    return seconds, chunks, peak


def indexing(small: float, big: float, sample: int, embedding: str) -> None:
    from fmflow.retrieval.chunking import iter_chunks

    results = {}
    with tempfile.TemporaryDirectory() as root:
        for megabytes in (small, big):
            path = Path(root) / f"big-{megabytes:g}mb.txt"
            text = prose(megabytes)
            path.write_text(text, encoding="utf-8")
            print(f"2. fmflow index of one {len(text) / 1e6:.1f} MB file (--embedding {embedding})")
            seconds, chunks, peak = index_file(path, Path(root) / f"store-{megabytes:g}", embedding)
            results[megabytes] = (seconds, chunks, peak, len(text))
            print(f"  {seconds:8.1f} s  {chunks / seconds:7.1f} chunks/s  ({chunks} chunks; peak resident memory "
                  f"{peak:.0f} MB)\n")
        chunks_sample = [chunk for _, chunk in zip(range(sample), iter_chunks(text))]
    (s_seconds, _, s_peak, s_size), (b_seconds, b_chunks, b_peak, b_size) = results[small], results[big]
    print(f"  time ratio {b_seconds / s_seconds:.2f} for a size ratio {b_size / s_size:.2f}: "
          f"{(b_seconds / s_seconds) / (b_size / s_size):.2f} of linear; memory {s_peak:.0f} MB -> {b_peak:.0f} MB "
          f"for {s_size / 1e6:.0f} MB -> {b_size / 1e6:.0f} MB of text")
    print()
    if embedding == "builtin:minilm":
        baseline(chunks_sample, b_chunks / b_seconds)


def baseline(chunks: list[str], rate: float) -> None:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("3. sentence-transformers is not installed: no baseline")
        return
    from fmflow.retrieval.embeddings import get_embedder

    model = SentenceTransformer(str(get_embedder("builtin:minilm").folder), device="cpu")
    model.encode(["warm up"])
    started = time.perf_counter()
    model.encode(chunks, normalize_embeddings=True)
    base_rate = len(chunks) / (time.perf_counter() - started)
    verdict = "meets" if rate >= base_rate else "MISSES"
    print(f"3. baseline: sentence-transformers encode of {len(chunks)} of the big file's chunks")
    print(f"  sentence-transformers encode {base_rate:7.1f} chunks/s")
    print(f"  fmflow index (whole file)    {rate:7.1f} chunks/s")
    print(f"  ratio fmflow index / sentence-transformers encode: {rate / base_rate:.2f}x "
          f"(target: at least as fast: {verdict})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=50.0, help="size of the big file (default 50)")
    parser.add_argument("--small-mb", type=float, default=5.0, help="size of the small file (default 5)")
    parser.add_argument("--sample", type=int, default=2000, help="chunks the baseline encodes (default 2000)")
    parser.add_argument("--embedding", default="builtin:minilm", help="the embedding of part 2 (default "
                        "builtin:minilm; the baseline runs only with it)")
    parser.add_argument("--skip-chunking", action="store_true", help="leave out part 1")
    parser.add_argument("--skip-index", action="store_true", help="leave out parts 2 and 3")
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f} before the run (other work on the machine makes the figures "
          f"noisy)\n")
    if not args.skip_chunking:
        chunking(args.mb)
    if not args.skip_index:
        indexing(args.small_mb, args.mb, args.sample, args.embedding)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
