"""A tiny random-weight llama-architecture GGUF for tests against a real llama-server.

``build_tiny_model(folder)`` writes ``folder/tiny.gguf``: 2 layers, n_embd 128,
a byte-level BPE vocabulary of about 440 tokens trained with ``tokenizers`` on
the text below, and a ChatML chat template in the metadata. The weights are
random (fixed seed), so the model speaks nonsense, but llama-server loads it,
serves the OpenAI chat-completions protocol with it (plain, streaming,
grammar-constrained JSON) and answers in milliseconds. About 1.7 MB.

Run as a script to write one: ``python tests/llama/tiny_model.py OUT_DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["CHATML_TEMPLATE", "MODEL_NAME", "build_tiny_model"]

MODEL_NAME = "tiny"
FILE_NAME = "tiny.gguf"

N_EMBD = 128
N_LAYER = 2
N_HEAD = 4
N_FF = 256
N_CTX = 512
VOCAB_SIZE = 440
SEED = 20240601

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Training text for the vocabulary: prose, numbers and JSON punctuation, so
# that common words and the pieces of a JSON reply get their own tokens.
TEXT = """\
A flow is a graph of calls. Every call runs as soon as the values it reads exist,
so independent calls run at the same time. The model answers the question from
the passages given, and the answer cites the passages it used.
Hello, world! Say hello to Ada and to Alan. The quick brown fox jumps over the lazy dog.
What is the capital of France? The capital of France is Paris.
How many legs does a spider have? A spider has eight legs.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 42 100 256 512 1024 3.14 0.25 -7 1e-3.
{"text": "yes", "ok": true, "n": 3, "items": ["a", "b"], "note": null, "score": 0.5}
{"answer": "no", "ok": false, "count": 12, "tags": [], "confidence": 0.9}
[{"id": "d1", "score": 0.75}, {"id": "d2", "score": 0.5}]
The system says: you are a helpful assistant. The user asks a question.
The assistant thinks, then writes a short answer in plain words.
Rate limits and concurrency limits keep the server from being flooded with requests.
Streaming sends the reply in small pieces as it is written, and ends with done.
"""


def _train_vocab() -> tuple[list[str], list[str]]:
    """Tokens (byte-level strings, ids in order) and merges ("a b") of a BPE trained on TEXT."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TEXT.splitlines(keepends=True) * 4, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    tokens = [""] * len(vocab)
    for token, index in vocab.items():
        tokens[index] = token
    if any(t == "" for t in tokens):
        raise RuntimeError("the trained vocabulary has gaps in its ids")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, merges


def build_tiny_model(folder: str | Path) -> Path:
    """Write the tiny model into ``folder`` and return the path of the .gguf file."""
    import gguf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILE_NAME
    tokens, merges = _train_vocab()
    n_vocab = len(tokens)
    special = {t: tokens.index(t) for t in SPECIAL_TOKENS}
    token_types = [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(MODEL_NAME)
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(special["<|endoftext|>"])
    writer.add_eos_token_id(special["<|im_end|>"])
    writer.add_eot_token_id(special["<|im_end|>"])
    writer.add_pad_token_id(special["<|endoftext|>"])
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    rng = np.random.default_rng(SEED)

    def weight(*shape: int) -> np.ndarray:
        # numpy shape (rows, cols) is ggml's [cols, rows]: a (out, in) matrix.
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    writer.add_tensor("token_embd.weight", weight(n_vocab, N_EMBD))
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones(N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones(N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", ones(N_EMBD))
    writer.add_tensor("output.weight", weight(n_vocab, N_EMBD))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


if __name__ == "__main__":
    import time

    started = time.perf_counter()
    out = build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else ".")
    print(f"{out}: {out.stat().st_size / 1e6:.2f} MB in {time.perf_counter() - started:.2f} s")
