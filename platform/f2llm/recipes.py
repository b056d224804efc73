"""The F2LLM-v2 model family as data: shapes and per-size training settings (recipe, table).

All sizes are dense Qwen3 decoders; 0.6B-14B start from the Qwen3 LLMs, 80M/160M/330M are pruned
from the stage-1 0.6B model and distilled from `teacher`. Vocabulary 151,936; embedding dim =
hidden size. `qwen3_config` gives the architecture a pruner or a from-config build targets.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import Qwen3Config

VOCAB_SIZE = 151_936


@dataclass(frozen=True)
class SizeRecipe:
    name: str
    hidden: int
    mlp: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    lr: float
    epochs: int
    global_batch: int
    teacher: str | None
    pruned_from: str | None = None  # smaller sizes skip stage 1: pruned from the stage-1 0.6B


RECIPES: dict[str, SizeRecipe] = {r.name: r for r in [
    SizeRecipe("80M", 320, 2048, 8, 16, 8, 128, 4e-5, 4, 512, "0.6B", "0.6B"),
    SizeRecipe("160M", 640, 1536, 9, 16, 8, 128, 3e-5, 3, 512, "0.6B", "0.6B"),
    SizeRecipe("330M", 896, 2560, 16, 16, 8, 128, 2e-5, 3, 512, "0.6B", "0.6B"),
    SizeRecipe("0.6B", 1024, 3072, 28, 16, 8, 128, 1e-5, 2, 512, "1.7B"),
    SizeRecipe("1.7B", 2048, 6144, 28, 16, 8, 128, 9e-6, 2, 512, "4B"),
    SizeRecipe("4B", 2560, 9728, 36, 32, 8, 128, 7e-6, 2, 512, None),
    SizeRecipe("8B", 4096, 12288, 36, 32, 8, 128, 6e-6, 2, 512, None),
    SizeRecipe("14B", 5120, 17408, 40, 40, 8, 128, 5e-6, 2, 512, None),
]}


def qwen3_config(size: str) -> Qwen3Config:
    r = RECIPES[size]
    return Qwen3Config(
        vocab_size=VOCAB_SIZE, hidden_size=r.hidden, intermediate_size=r.mlp, num_hidden_layers=r.layers,
        num_attention_heads=r.heads, num_key_value_heads=r.kv_heads, head_dim=r.head_dim,
    )
