"""A tiny Qwen2-architecture model and a byte-level tokenizer, built in code (no hub).

Used by the tests and by the local CPU mode. `save_tiny(path)` writes a directory that
`transformers.AutoTokenizer` / `AutoModelForCausalLM` (and so verl's `hf_tokenizer`) load like
any checkpoint. The chat template is Qwen2.5's shape (<|im_start|>role ... <|im_end|>).
"""

from __future__ import annotations

from pathlib import Path

import torch

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer():
    """A byte-level tokenizer with no merges (one id per UTF-8 byte) and Qwen's special tokens.

    It is the Qwen2 tokenizer's scheme (byte-level BPE) with an empty merge table, so it loads
    and behaves the same whether transformers builds it as Qwen2Tokenizer (as AutoTokenizer does
    for a qwen2 checkpoint) or as a generic fast tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIALS + alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(SPECIALS)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_model(vocab_size: int, seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4,
                kv_heads: int = 2, intermediate: int = 128, max_positions: int = 2048):
    """A randomly initialised Qwen2ForCausalLM of the given (tiny) shape."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=SPECIALS.index("<|im_start|>"),
        eos_token_id=SPECIALS.index("<|im_end|>"),
        pad_token_id=SPECIALS.index("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.eval()
    return model


def save_tiny(path: str | Path, seed: int = 0, **shape) -> Path:
    """Write a tiny model + tokenizer checkpoint directory; returns its path."""
    path = Path(path)
    tok = build_tokenizer()
    model = build_model(len(tok), seed=seed, **shape)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
