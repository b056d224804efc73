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
    pruned_from: str | None = None  # made by pruning this size's stage-1 model (the family pipeline)


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


FAMILY = "family"  # the 0.6B run with the three pruned sizes as its students


GPUS_PER_NODE, GPU_MEMORY_GB = 8, 80  # the recipe's nodes (8 GPUs); H100 80 GB for the layout


def _stage(r: SizeRecipe, micro_batches: int = 1):
    from f2llm.config import StageConfig

    # Both stages use the table's lr and epochs (the recipe gives one value per size; inferred).
    return StageConfig(epochs=r.epochs, lr=r.lr, batch_size=r.global_batch, warmup_steps=500,
                       grad_accumulation=micro_batches)


def _layout(size: str):
    """`f2llm plan`'s layout of a size on the recipe's nodes: (TrainConfig fields, ClusterConfig, micro-batches)."""
    from f2llm.config import ClusterConfig, TrainClusterConfig
    from f2llm.model.plan import fit, layout

    strategy, gpus, nodes = layout(size, GPU_MEMORY_GB, GPUS_PER_NODE)
    micro = fit(size, strategy, gpus, GPU_MEMORY_GB).micro_batches
    train = {"strategy": "ddp" if strategy == "DDP" else "fsdp", "cpu_offload": strategy == "FSDP + offload"}
    cluster = ClusterConfig(train=TrainClusterConfig(gpus_per_node=min(gpus, GPUS_PER_NODE), nodes=nodes))
    return train, cluster, micro


def student(size: str):
    """A pruned size as a family student: its shape, lr and epochs; taught by the run's model."""
    from f2llm.config import StudentConfig

    r = RECIPES[size]
    return StudentConfig(name=_run_name(size), hidden=r.hidden, mlp=r.mlp, layers=r.layers, stage2=_stage(r))


def run_config(size: str, store: str = "s3://f2llm"):
    """A ready-made RunConfig for one size (or `family`): the table's lr, epochs, global batch, teacher,
    and `f2llm plan`'s layout on 8-GPU nodes of 80 GB (strategy, GradCache micro-batches, GPUs, nodes).

    Layout in the store: data under `{store}/data/f2llm-v2`, Qwen3 base weights under
    `{store}/models/Qwen3-{size}`, each run's model at `{store}/runs/{run name}/model` (a teacher is
    that of its size's run). A size pruned from 0.6B is a family run of the 0.6B (recipe: pruned
    from the stage-1 0.6B model, distilled from the 0.6B): the 0.6B's two stages, then the student
    pruned and trained through stage 2; `family` does all three students in one run.
    """
    from f2llm.config import (
        DataConfig,
        EvalConfig,
        FamilyConfig,
        ModelConfig,
        RunConfig,
        TrainConfig,
    )

    if size == FAMILY or RECIPES[size].pruned_from:
        sizes = [s for s, r in RECIPES.items() if r.pruned_from] if size == FAMILY else [size]
        teacher = run_config(RECIPES[sizes[0]].pruned_from, store)
        name = _run_name(size) if size != FAMILY else "f2llm-v2-family"
        return teacher.model_copy(update={
            "name": name, "output_uri": f"{store}/runs/{name}", "family": FamilyConfig(students=[student(s) for s in sizes]),
        })
    r = RECIPES[size]
    strategy, cluster, micro = _layout(size)
    return RunConfig(
        name=_run_name(size),
        data=DataConfig(uri=f"{store}/data/f2llm-v2"),
        model=ModelConfig(base=f"{store}/models/Qwen3-{size}", max_length=1024),
        train=TrainConfig(
            stage1=_stage(r, micro), stage2=_stage(r, micro), gradient_checkpointing=True,
            teacher=f"{store}/runs/{_run_name(r.teacher)}/model" if r.teacher else None, **strategy,
        ),
        eval=EvalConfig(max_length=8192),  # recipe: training at 1024 tokens, evaluation at 8192
        output_uri=f"{store}/runs/{_run_name(size)}",
        cluster=cluster,
    )


def run_config_yaml(size: str, store: str = "s3://f2llm") -> str:
    import yaml

    cfg = run_config(size, store).model_dump(mode="json", exclude_unset=True)
    header = (
        f"# F2LLM-v2 {size}: the recipe's settings for this size, written by `f2llm recipe {size}`\n"
        "# from f2llm.recipes (tests check the two agree). Point the URIs at your store.\n"
    )
    return header + yaml.safe_dump(cfg, sort_keys=False)
