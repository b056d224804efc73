"""Tokenisation with the recipe's EOS rule, and the tiny byte-level BPE tokenizer.

Recipe: tokenise, truncate, then make sure the last token is EOS (overwrite the last position
when truncation cut it off). EOS must differ from the pad token, or an attention mask derived
from pad ids would mask the EOS itself. Tokenizers we publish also append EOS in their
post-processor, so sentence-transformers and vLLM produce the same ids as we do.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"  # Qwen3's pad token
EOS_TOKEN = "<|im_end|>"  # Qwen3's EOS


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (Qwen3's kind) trained on the given texts, in well under a second."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_input_names=["input_ids", "attention_mask"],
    )
    return ensure_eos_appended(fast)


def ensure_eos_appended(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Make `tokenizer(text)` end every sequence with EOS (what peers see in an exported model)."""
    if tokenizer.eos_token is None or tokenizer.eos_token == tokenizer.pad_token:
        raise ValueError("tokenizer needs an EOS token that differs from its pad token")
    if tokenizer("a")["input_ids"][-1] == tokenizer.eos_token_id:
        return tokenizer
    eos = tokenizer.eos_token
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B:1 {eos}:1",
        special_tokens=[(eos, tokenizer.eos_token_id)],
    )
    return tokenizer


def encode_with_eos(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, truncated to max_length, always ending in EOS."""
    return encode_limited(tokenizer, texts, max_length, reject=False)


class InputTooLong(ValueError):
    def __init__(self, index: int, tokens: int, limit: int):
        super().__init__(f"input {index} has {tokens} tokens; the limit is {limit}")
        self.index, self.tokens, self.limit = index, tokens, limit


def encode_limited(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, reject: bool,
) -> list[list[int]]:
    """Token ids ending in EOS; an input over max_length (EOS counted) is cut to it by the EOS
    rule, or, with `reject`, raises InputTooLong naming the first such input."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if reject:
        for i, row in enumerate(ids):
            if len(row) + 1 > max_length:
                raise InputTooLong(i, len(row) + 1, max_length)
    return [row[: max_length - 1] + [eos] for row in ids]
