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


def _run_name(size: str) -> str:
    return "f2llm-v2-" + size.lower().replace(".", "-")


def run_config(size: str, store: str = "s3://f2llm"):
    """A ready-made RunConfig for one size: the table's lr, epochs, global batch and teacher.

    Layout in the store: data under `{store}/data/f2llm-v2`, Qwen3 base weights under
    `{store}/models/Qwen3-{size}`, pruned starting points under `{store}/models/f2llm-v2-{size}-pruned`,
    and each run's model at `{store}/runs/{run name}/model` (a teacher is that of its size's run).
    Both stages use the table's lr and epochs (the recipe gives one value per size; inferred).
    Sizes pruned from 0.6B skip stage 1 (recipe: they start from the stage-1 0.6B model).
    """
    from f2llm.config import DataConfig, EvalConfig, ModelConfig, RunConfig, StageConfig, TrainConfig

    r = RECIPES[size]
    stage = StageConfig(epochs=r.epochs, lr=r.lr, batch_size=r.global_batch, warmup_steps=500)
    base = f"{store}/models/f2llm-v2-{size}-pruned" if r.pruned_from else f"{store}/models/Qwen3-{size}"
    teacher = f"{store}/runs/{_run_name(r.teacher)}/model" if r.teacher else None
    return RunConfig(
        name=_run_name(size),
        data=DataConfig(uri=f"{store}/data/f2llm-v2"),
        model=ModelConfig(base=base, max_length=1024),
        train=TrainConfig(
            stage1=None if r.pruned_from else stage, stage2=stage, teacher=teacher, gradient_checkpointing=True,
        ),
        eval=EvalConfig(max_length=8192),  # recipe: training at 1024 tokens, evaluation at 8192
        output_uri=f"{store}/runs/{_run_name(size)}",
    )


def run_config_yaml(size: str, store: str = "s3://f2llm") -> str:
    import yaml

    cfg = run_config(size, store).model_dump(mode="json", exclude_unset=True)
    header = (
        f"# F2LLM-v2 {size}: the recipe's settings for this size, written by `f2llm recipe {size}`\n"
        "# from f2llm.recipes (tests check the two agree). Point the URIs at your store.\n"
    )
    return header + yaml.safe_dump(cfg, sort_keys=False)
