"""A tiny random-weight GPT-2 saved as a local Hugging Face folder, for offline tests.

``build_tiny_gpt2(folder)`` trains a byte-level BPE tokenizer on a few
sentences with `tokenizers`, wraps it in PreTrainedTokenizerFast with a
small chat template, builds GPT2Config(n_layer=2, n_embd=64, n_head=2,
n_positions=128) with fixed seeds and saves both with ``save_pretrained``
(about 0.6 MB, a few seconds). Nothing is downloaded. The answers are
gibberish, but deterministic under greedy decoding.

Test modules import this file by name (pytest puts the test folder on the
import path) and use the session fixture ``tiny_gpt2_dir``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_CORPUS = [
    "The retry policy asks the model again after a transport error.",
    "A flow file declares models, prompts, retrievers, tools and flows.",
    "Refunds are issued within fourteen days of the purchase.",
    "The cache keeps answers of prompts whose temperature is zero.",
    "Question: how do I retry a prompt? Answer: use on_fail reask.",
    "system: you answer briefly. user: hello there. assistant: hi!",
    "Tokens in and tokens out are counted for every call of a model.",
    "".join(chr(c) for c in range(32, 127)) + "\n",  # every printable ASCII character, and newline
]
SPECIAL_TOKENS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]


def build_tiny_gpt2(folder: str | Path, *, chat_template: bool = True, seed: int = 0) -> Path:
    """Build and save the tiny model and tokenizer in ``folder``; returns the folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    # Only characters seen in the corpus (printable ASCII) enter the vocabulary, so
    # whatever the model generates decodes to readable text, never to half a
    # UTF-8 character; other input characters become the unknown token.
    bpe = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL_TOKENS,
                                  show_progress=False)
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                                        pad_token="<|endoftext|>")
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE

    torch.manual_seed(seed)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_embd=64, n_head=2, n_positions=128,
                        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
                        # Untied output weights: with tied ones a random model repeats its last input token.
                        tie_word_embeddings=False)
    model = GPT2LMHeadModel(config)
    model.eval()

    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    """A folder holding the tiny GPT-2 (built once per test session)."""
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2") / "model")
