"""Small models built on the spot for retrieval tests: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path


TINY_CORPUS = [
    "the retry policy asks the model again after a transport error",
    "a flow file declares models prompts retrievers tools and flows",
    "refunds are issued within fourteen days of the purchase",
    "how do i reset my password", "the cat sat on the mat",
]


def tiny_text(i: int) -> str:
    """A sentence in the tiny BERT's vocabulary, different for each i (so are their vectors)."""
    words = " ".join(TINY_CORPUS).split()
    start = (i * 7) % len(words)
    return " ".join(words[start:] + words[:start][: i % 11]) + "."


def build_tiny_bert(folder: Path) -> Path:
    """A random 2-layer BERT (hidden 32) and a WordPiece tokenizer trained here."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    corpus = TINY_CORPUS * 3
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece()
    wordpiece.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=200, special_tokens=special,
                                                                    show_progress=False))
    cls_id, sep_id = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                        model_max_length=64)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=wordpiece.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        pad_token_id=wordpiece.token_to_id("[PAD]"))
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
