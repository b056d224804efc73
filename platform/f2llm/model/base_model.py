"""The base model a run starts from, written as a Hugging Face checkpoint directory.

Either a real checkpoint (Qwen3 / F2LLM-v2, from a path or a store URI) copied in, or, for local
runs and tests, a tiny Qwen3-shaped model built from a config with a BPE tokenizer trained on the
run's own text. Both end up as `save_pretrained` output, so every later stage loads them alike
with AutoModel / AutoTokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from transformers import AutoTokenizer, Qwen3Config, Qwen3Model

from f2llm import storage
from f2llm.config import ModelConfig, TinyModelConfig
from f2llm.model.tokenizer import ensure_eos_appended, train_bpe_tokenizer


def build_tiny_model(cfg: TinyModelConfig, texts: Iterable[str], out_dir: str | Path) -> Path:
    tokenizer = train_bpe_tokenizer(texts, cfg.vocab_size)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
    )
    return save_random_model(config, tokenizer, out_dir, cfg.seed)


def save_random_model(config: Qwen3Config, tokenizer, out_dir: str | Path, seed: int = 0) -> Path:
    """A seeded, randomly initialised Qwen3 of `config`'s shape with `tokenizer`'s special ids, saved
    as a checkpoint: the tiny model, or a recipe shape for benchmarks (random weights, real size)."""
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens; the model's vocabulary only {config.vocab_size}")
    config.pad_token_id, config.eos_token_id, config.bos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id, None
    torch.manual_seed(seed)
    model = Qwen3Model(config)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def fetch_base_model(cfg: ModelConfig, out_dir: str | Path) -> Path:
    """Copy a checkpoint from a path or URI into out_dir, checking its tokenizer's EOS rule."""
    out = storage.download_dir(cfg.base, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out, trust_remote_code=cfg.trust_remote_code)
    ensure_eos_appended(tokenizer).save_pretrained(out)
    return out
