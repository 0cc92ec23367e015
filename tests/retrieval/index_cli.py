"""Running `fmflow index` and `fmflow run` as the user does, and looking into the store afterwards."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[")
# Run without the root user's power to read and write everything (CAP_DAC_OVERRIDE), so file
# permissions apply as they do to everyone else.
_UNPRIVILEGED = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                 "--bounding-set=-dac_override,-dac_read_search"]


def env(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("FMFLOW_DEBUG", "NO_COLOR")}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    # No progress lines unless a test asks for them: a slow machine would print them anywhere.
    environment.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", FMFLOW_PROGRESS_SECONDS="3600")
    environment.update(extra)
    return environment


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fmflow", *map(str, args)]


def clean(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream, stream
        assert "internal error" not in stream, stream
        assert not ANSI.search(stream), f"ANSI escapes with no terminal: {stream!r}"
    return result


def fmflow(cwd: Path, *args: str, timeout: float = 180, unprivileged: bool = False,
           **extra_env: str) -> subprocess.CompletedProcess:
    """`fmflow ARGS` in `cwd`, checked for tracebacks and terminal escapes."""
    prefix = unprivileged_prefix() if unprivileged else []
    return clean(subprocess.run(prefix + command(*args), cwd=cwd, env=env(**extra_env), capture_output=True,
                                text=True, timeout=timeout))


def index(cwd: Path, *args: str, **options) -> subprocess.CompletedProcess:
    return fmflow(cwd, "index", *args, **options)


def unprivileged_prefix() -> list[str]:
    """What to put before a command so that it cannot read or write past file permissions."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be tested")
    return list(_UNPRIVILEGED)


def minilm_available() -> bool:
    try:
        from fmflow.retrieval.embeddings import EmbeddingError, get_embedder

        get_embedder("builtin:minilm")
        return True
    except (ImportError, EmbeddingError):
        return False


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def skipped(result: subprocess.CompletedProcess) -> dict[str, str]:
    """{path: reason} of the `fmflow: skipped PATH: REASON` lines on stderr."""
    found = {}
    for line in result.stderr.splitlines():
        match = re.match(r"fmflow: skipped (.+?): (.+)$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def rows(store: Path, name: str = "docs") -> dict[str, dict]:
    """{id: metadata + text + facts} of a collection, read by a fresh process (as the next run would).

    Each entry's facts: `finite` (its embedding read, all numbers finite) and
    `found` (a search with its own embedding finds it). Raises StoreUnreadable
    with Chroma's message when the embeddings cannot all be read.
    """
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import index_cli; "
            f"index_cli.inspect_main({str(store)!r}, {name!r})")
    result = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    if "error" in found:
        raise StoreUnreadable(found["error"])
    return found["rows"]


class StoreUnreadable(Exception):
    """Reading every embedding of a collection failed."""


def inspect_main(store: str, name: str) -> None:
    """In a fresh process: print the facts `rows` returns, as JSON."""
    from fmflow.retrieval.store import collection, open_store

    found = collection(open_store(store, create=False), name, None)
    try:
        got = found.get(include=["metadatas", "documents", "embeddings"])
    except Exception as error:  # Chroma's own types
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        return
    entries = {}
    for id_, metadata, text, vector in zip(got["ids"], got["metadatas"], got["documents"], got["embeddings"]):
        vector = [float(x) for x in vector]
        entries[id_] = {**(metadata or {}), "text": text, "vector": vector,
                        "finite": bool(vector) and all(math.isfinite(x) for x in vector)}
    # The vector index's search is approximate: what the nearest ten miss (an entry in a crowd
    # of near-copies, rarely) is looked for again with a search as wide as 500 results.
    for neighbours in (10, 500):
        ids = [id_ for id_ in entries if entries[id_]["finite"] and not entries[id_].get("found")]
        for start in range(0, len(ids), 200):
            batch = ids[start:start + 200]
            nearest = found.query(query_embeddings=[entries[i]["vector"] for i in batch],
                                  n_results=min(neighbours, len(entries)), include=["distances"])
            for id_, got_ids, distances in zip(batch, nearest["ids"], nearest["distances"]):
                entries[id_]["found"] = id_ in got_ids or bool(distances and distances[0] < 1e-4)
    for entry in entries.values():
        entry.pop("vector")
    print(json.dumps({"rows": entries}))


def assert_sound(store: Path, name: str = "docs") -> dict[str, dict]:
    """Every entry has metadata, its text matches its hash, a finite vector, and is found by its own vector."""
    entries = rows(store, name)
    for id_, row in entries.items():
        assert {"source", "chunk", "hash"} <= set(row), (id_, row)
        assert hashlib.sha1(row["text"].encode("utf-8")).hexdigest() == row["hash"], id_
        assert row["finite"] and row.get("found"), (id_, row)
    return entries
