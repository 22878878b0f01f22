"""A tiny random causal LM and its tokenizer, built in-process (no network, no files from outside).

The tokenizer is character-level (`tokenizers` WordLevel over single characters): every digit,
letter, punctuation mark and the space are single tokens, so the rating digits "1".."5" are
single bare-digit pieces, and it adds a BOS token like Llama's. The model is a 2-layer
`LlamaForCausalLM` (hidden size 32, 4 heads) with a fixed seed and a larger-than-default init
range so that its next-token distribution is far from uniform (scores then differ by row and by
position, which the batching/padding tests need in order to be able to fail).

Fixture: `tiny_model_dir` (session) -> path loadable by `SelectITScorer(model=str(path))` and by
`AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained`.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Optional

import pytest

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
# A chat template in the style of SmolLM2/ChatML, for the scorer's template="chat" mode.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _vocab(digits: str) -> dict:
    chars = list(string.ascii_letters + string.punctuation + " \n\t") + ["\u2014", "\u2019", "\u00e9"]
    pieces = list(SPECIAL_TOKENS)
    if digits == "bare":
        pieces += list("0123456789")
    elif digits == "space":
        # Digits exist only with a leading space: the bare digit is not a single token.
        pieces += [f" {d}" for d in "0123456789"]
    elif digits != "none":
        raise ValueError(f"digits={digits!r}: expected 'bare', 'space' or 'none'")
    pieces += [c for c in chars if c not in pieces]
    return {p: i for i, p in enumerate(pieces)}


def build_tiny_tokenizer(*, digits: str = "bare", chat_template: Optional[str] = None):
    """A PreTrainedTokenizerFast with single-character pieces that adds BOS.

    Args:
        digits: "bare" (digits are single tokens), "space" (only " 1".." 9" exist as tokens,
            bare digits split/unknown) or "none" (no digit tokens at all).
        chat_template: optional Jinja chat template.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = _vocab(digits)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    if digits == "space":
        # " 1" is one piece; every other character stands alone.
        pattern = Regex(r" [0-9]|[\s\S]")
    else:
        pattern = Regex(r"[\s\S]")
    tok.pre_tokenizer = pre_tokenizers.Split(pattern, behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        model_max_length=4096,
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def build_tiny_model_dir(
    path, *, digits: str = "bare", chat_template: Optional[str] = None, seed: int = 0,
    max_position_embeddings: int = 2048,
) -> Path:
    """Write a tiny random LlamaForCausalLM + its tokenizer to `path` and return it.

    Example:
        >>> d = build_tiny_model_dir(tmp_path / "tiny")
        >>> SelectITScorer(model=str(d))
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tokenizer = build_tiny_tokenizer(digits=digits, chat_template=chat_template)
    vocab_size = len(tokenizer)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.3,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Path of a tiny random Llama causal LM + character-level tokenizer (digits single tokens)."""
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_lm") / "model", chat_template=CHAT_TEMPLATE)
