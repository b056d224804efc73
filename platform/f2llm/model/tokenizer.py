"""Tokenisation with the recipe's EOS rule, and the tiny byte-level BPE tokenizer.

Recipe: tokenise, truncate, then make sure the last token is EOS (overwrite the last position
when truncation cut it off). EOS must differ from the pad token, or an attention mask derived
from pad ids would mask the EOS itself. Tokenizers we publish also append EOS in their
post-processor, so sentence-transformers and vLLM produce the same ids as we do.
"""

from __future__ import annotations

import functools
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
    def __init__(self, index: int, tokens: int, limit: int, at_least: bool = False):
        super().__init__(f"input {index} has {'over ' if at_least else ''}{tokens} tokens; the limit is {limit}")
        self.index, self.tokens, self.limit, self.at_least = index, tokens, limit, at_least


WINDOW_MARGIN = 8  # tokens at a window's end that a cut inside a word may have changed


@functools.cache
def longest_token_chars(tokenizer: PreTrainedTokenizerBase) -> int:
    """An upper bound on the characters one token covers: the longest vocabulary entry (byte-level
    entries spell one byte per character, and a character is at least one byte)."""
    return max(map(len, tokenizer.get_vocab()))


def encode_limited(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, reject: bool,
) -> list[list[int]]:
    """Token ids ending in EOS; an input over max_length (EOS counted) is cut to it by the EOS
    rule, or, with `reject`, raises InputTooLong naming the first such input.

    The work is bounded by what is kept, not by the input: a text longer than max_length
    characters is tokenised in growing prefixes (`_prefix_ids`) until one yields enough tokens,
    and under `reject` a text longer than max_length x `longest_token_chars` characters cannot
    fit and is refused before any tokenising.
    """
    keep = max_length - 1  # EOS takes the last position
    if reject:
        bound = max_length * longest_token_chars(tokenizer)
        for i, text in enumerate(texts):
            if len(text) > bound:
                raise InputTooLong(i, max_length, max_length, at_least=True)
    short = [i for i, text in enumerate(texts) if len(text) <= max_length]
    ids: list[list[int] | None] = [None] * len(texts)
    if short:  # one batched call: each is at most max_length characters, so a few x max_length tokens
        for i, row in zip(short, tokenizer([texts[i] for i in short], add_special_tokens=False)["input_ids"]):
            ids[i] = row
    for i, text in enumerate(texts):
        if ids[i] is None:
            ids[i] = _prefix_ids(tokenizer, text, keep + WINDOW_MARGIN + 1)
    eos = tokenizer.eos_token_id
    if reject:
        for i, row in enumerate(ids):
            if len(row) > keep:
                complete = len(row) < keep + WINDOW_MARGIN + 1
                raise InputTooLong(i, len(row) + 1 if complete else keep + 1, max_length, at_least=not complete)
    return [row[:keep] + [eos] for row in ids]


def _prefix_ids(tokenizer: PreTrainedTokenizerBase, text: str, wanted: int) -> list[int]:
    """Ids of the text, or of a prefix holding at least `wanted` tokens, the last WINDOW_MARGIN of
    which may differ from the whole text's (the cut can fall inside a word).

    Byte-level BPE merges within a pre-token (a word), so a cut changes only the word it falls in;
    the margin covers it (a heuristic bound: a merge cascade reaching further back within one long
    word is possible in principle; tests compare with whole-text tokenisation across the sample's
    scripts). The window grows 2-4x a step by the observed characters per token, so it ends within
    a small factor of the characters the kept tokens cover, whatever the input's length.
    """
    window = wanted
    while True:
        ids = tokenizer(text[:window], add_special_tokens=False)["input_ids"]
        if window >= len(text) or len(ids) >= wanted:
            return ids
        # grow by the observed characters per token, at least 2x and at most 4x a step
        window = min(len(text), 4 * window, max(2 * window, int(window * 1.25 * wanted / max(len(ids), 1))))
