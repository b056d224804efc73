"""Train one stage of the F2LLM-v2 recipe: a script a person can follow top to bottom.

set-up (model, tables, sampler, AdamW + schedule) -> loop (one source per batch, hard negatives
sampled per task, Matryoshka InfoNCE, clip, step) -> save (HF checkpoint) -> log (JSON lines).

Recipe: full fine-tuning, AdamW betas (0.9, 0.98), weight decay 0.01, grad clip 1.0, warmup
(recipe: 500 optimizer steps) then cosine (or constant) schedule floored at min_lr; hard negatives
per task type (7 retrieval, 9 clustering, 1 binary classification) sampled from the stored ones:
exactly that many for every batch (a row with fewer stops the run at set-up; mining quarantines
such rows). A positive text twice in a global batch is one in-batch column. With a teacher, stage 2
adds kd_weight * (MSE on raw query, positive and negative states), the teacher frozen and
truncated to the student's width.

Data parallel under torchrun (`distributed.py`): W ranks match one process with the same global
batch. With `checkpoint_uri`, a checkpoint is committed every `checkpoint_every` steps and a
restarted run resumes from the latest one to the same weights (`checkpoint.py`).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.distributed.tensor import DTensor
from tqdm.auto import tqdm

from f2llm.config import StageConfig, TrainConfig
from f2llm.kernels import distillation_mse
from f2llm.model.encoder import Encoder, autocast_dtype
from f2llm.model.matryoshka import matryoshka_dims, matryoshka_weights
from f2llm.tasks import TASKS, TaskType
from f2llm.train import checkpoint, distributed
from f2llm.train.losses import contrastive_loss
from f2llm.train.sampler import SourceBatchSampler


def lr_lambda(cfg: StageConfig, total_steps: int):
    """Multiplier on cfg.lr: linear warmup (warmup_steps, else warmup_ratio of the run), then cosine
    (or constant), floored at min_lr."""
    warmup = max(1, cfg.warmup_steps if cfg.warmup_steps is not None else int(cfg.warmup_ratio * total_steps))
    floor = cfg.min_lr / cfg.lr

    def factor(step: int) -> float:
        if step < warmup:
            return max(floor, (step + 1) / warmup)
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return max(floor, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return factor


def _global_values(loss: torch.Tensor, parts: dict[str, float]) -> tuple[float, dict[str, float]]:
    """Sum the ranks' scaled values: the global batch's loss terms (for logging)."""
    names = sorted(parts)
    values = torch.tensor([loss.item()] + [parts[n] for n in names], dtype=torch.float64, device=loss.device)
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(values)
    return values[0].item(), dict(zip(names, values[1:].tolist()))


@dataclass(frozen=True)
class BatchObjective:
    """The recipe's loss of one rank's share of a global batch, from its pooled raw states.

    states = [queries (b); positives (b); negatives (b * k)], rows offset..offset+b of a global
    batch of `total` queries. Returns the share's part of the global mean,

        L = b / B * ( sum_d w_d (L_hn + [in_batch] L_ib)  +  kd_weight * KD )

    so summing every rank's L (and its gradients) gives the global batch's loss (its gradient).
    """

    in_batch: bool
    dims: list[int]
    weights: list[float]
    temperature: float
    b: int
    k: int
    offset: int
    total: int
    teacher: Encoder | None = None
    kd_weight: float = 1.0
    positive_ids: tuple[int, ...] | None = None  # the global batch's positive text ids: duplicates masked

    def __call__(self, states: torch.Tensor, ids: list[list[int]]) -> tuple[torch.Tensor, dict[str, float]]:
        b, k = self.b, self.k
        parts = {"hard_negative": 0.0, "in_batch": 0.0, **({"kd": 0.0} if self.teacher is not None else {})}
        all_positives = distributed.gather_with_grad(states[b : 2 * b]) if self.in_batch else None
        if not b:  # an empty share still joins the gather's backward collective
            return (all_positives.sum() * 0.0 if all_positives is not None else states.sum() * 0.0), parts
        loss, parts = contrastive_loss(
            states[:b], states[b : 2 * b], states[2 * b :].view(b, k, -1), in_batch=self.in_batch,
            dims=self.dims, weights=self.weights, temperature=self.temperature,
            all_positives=all_positives, offset=self.offset, positive_ids=self.positive_ids,
        )
        if self.teacher is not None:
            with torch.no_grad():
                target = self.teacher(ids)
            kd = sum(distillation_mse(states[s], target[s]) for s in (slice(0, b), slice(b, 2 * b), slice(2 * b, None)))
            loss = loss + self.kd_weight * kd
            parts["kd"] = kd.item()
        scale = b / self.total
        return loss * scale, {key: value * scale for key, value in parts.items()}


def backward(
    encoder: Encoder, ids: list[list[int]], objective: BatchObjective, micro_batches: int = 1,
    lockstep: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Encode `ids`, take the objective and back-propagate it into the encoder's parameters.

    With micro_batches > 1 (GradCache): states are encoded without a graph, the objective's
    gradient g = dL/dstates is taken once over the whole share, then each micro-batch m is
    re-encoded and back-propagated with sum(states_m * g_m). By the chain rule this is the
    one-pass gradient, while only one micro-batch's activations are ever held.

    lockstep (FSDP): every rank calls the backbone equally often whatever its share (each call
    all-gathers parameters, each backward reduce-scatters gradients: collectives), so there are
    always `micro_batches` chunks, and an empty one encodes a one-token row whose states are cut
    to zero rows (gradient zero, the collectives still run).
    """
    def encode(chunk: list[list[int]]) -> torch.Tensor:
        if chunk:
            return encoder(chunk)
        if lockstep:
            return encoder([[encoder.tokenizer.eos_token_id]])[:0]
        return torch.zeros(0, encoder.hidden_size, device=encoder.device, requires_grad=True)

    if micro_batches == 1 or (len(ids) <= 1 and not lockstep):
        states = encode(ids)
        loss, parts = objective(states, ids)
        if loss.requires_grad:
            loss.backward()
        return loss.detach(), parts
    count = micro_batches if lockstep else min(micro_batches, len(ids))
    chunks = [distributed.local_slice(len(ids), i, micro_batches) for i in range(count)]
    with torch.no_grad():
        cached = torch.cat([encode(ids[chunk]) for chunk in chunks])
    cached.requires_grad_(True)
    loss, parts = objective(cached, ids)
    loss.backward()
    for chunk in chunks:
        encode(ids[chunk]).backward(cached.grad[chunk])
    return loss.detach(), parts


def check_negative_counts(table: pd.DataFrame, path: Path, cfg: TrainConfig) -> None:
    """Every row must hold at least its task's count of hard negatives: a batch takes exactly that
    many per row, and taking the batch's smallest count would let one row cut it for all."""
    needed = table["task"].map(cfg.negatives_for)
    have = table["negative_ids"].map(len)
    short = table.index[have < needed]
    if len(short):
        i = short[0]
        raise ValueError(
            f"{path}: {len(short)} rows have fewer hard negatives than their task's count; row {i} "
            f"(source {table.at[i, 'source']}) has {have[i]} hard negatives; {table.at[i, 'task']} needs {needed[i]} "
            "(the mine-negatives step quarantines such rows)"
        )


def train_stage(
    init_dir: str | Path, data_dir: str | Path, stage: int, cfg: TrainConfig, max_length: int,
    out_dir: str | Path, log_path: str | Path, on_step: Callable[[int, Encoder], None] | None = None,
) -> dict:
    """One stage -> its summary. `on_step(step, encoder)` runs after every optimizer step (one
    process only: the tuner's intermediate evaluations); what it raises ends the stage."""
    stage_cfg = cfg.stage1 if stage == 1 else cfg.stage2
    if stage_cfg is None:
        raise ValueError(f"stage {stage} is not configured")
    torch.manual_seed(cfg.seed + stage)
    rng = random.Random(cfg.seed + stage)  # same seed on every rank: same batches, same negatives
    rank, world = distributed.init()
    main_rank = rank == 0
    device = distributed.device()

    # --- set-up (from the latest checkpoint when the run was interrupted)
    resume_dir = None
    dcp_format = cfg.strategy == "fsdp"  # sharded checkpoints, at any world size (1 -> 2 resumes too)
    if cfg.checkpoint_uri:
        cache = Path(out_dir).parent / f".resume-stage{stage}" / f"rank{rank}"
        resume_dir = checkpoint.latest(cfg.checkpoint_uri, cache)
    options = {"max_length": max_length, "pooling": cfg.pooling, "precision": cfg.precision}
    encoder = Encoder.load(resume_dir / "model" if resume_dir and not dcp_format else init_dir, **options)
    encoder.to(device).gradient_checkpointing(cfg.gradient_checkpointing).model.train()
    sharded = cfg.strategy == "fsdp" and world > 1
    if sharded:
        encoder.bucketing = False  # one backbone call a micro-batch on every rank (see `backward`)
        distributed.shard(encoder.model, encoder.model.layers, offload=cfg.cpu_offload,
                          bf16=autocast_dtype(cfg.precision, device) == torch.bfloat16)
    teacher = None
    if stage == 2 and cfg.teacher is not None:  # frozen; it reads the same token ids
        teacher = Encoder.load(cfg.teacher, **options).to(device).requires_grad_(False).eval()
    table_path = Path(data_dir) / f"stage{stage}.parquet"
    table = pd.read_parquet(table_path)
    check_negative_counts(table, table_path, cfg)
    corpus = pd.read_parquet(Path(data_dir) / "corpus.parquet")["input_ids"].map(list).tolist()
    hidden = encoder.hidden_size
    dims = matryoshka_dims(hidden) if cfg.matryoshka else [hidden]
    weights = matryoshka_weights(dims) if cfg.matryoshka else [1.0]
    sampler = SourceBatchSampler(
        {s: idx.tolist() for s, idx in table.groupby("source").indices.items()}, stage_cfg.batch_size, cfg.seed
    )
    steps_per_epoch = len(sampler)
    total_steps = steps_per_epoch * stage_cfg.epochs
    if stage_cfg.max_steps is not None:
        total_steps = min(total_steps, stage_cfg.max_steps)
    optimizer = torch.optim.AdamW(
        encoder.parameters(), lr=stage_cfg.lr, betas=stage_cfg.betas, weight_decay=stage_cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(stage_cfg, total_steps))
    step, position = 0, (0, 0)  # position: (epoch, batch index) of the next batch
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    kept_log = []
    if resume_dir:
        state = (checkpoint.load_sharded(resume_dir, encoder.model, optimizer, scheduler) if dcp_format
                 else checkpoint.load_trainer_state(resume_dir, optimizer, scheduler))
        step, position = state["step"], tuple(state["position"])
        rng.setstate((state["rng"][0], tuple(state["rng"][1]), state["rng"][2]))
        if log_path.exists():  # drop what was logged after the checkpoint: those steps run again
            kept_log = [line for line in log_path.read_text().splitlines() if json.loads(line)["step"] <= step]

    # --- loop
    samples, started, last_loss = 0, time.perf_counter(), float("nan")
    with (log_path.open("w") if main_rank else open(os.devnull, "w")) as log, \
            tqdm(total=total_steps, initial=step, desc=f"stage {stage}", disable=not main_rank) as bar:
        log.writelines(line + "\n" for line in kept_log)
        for epoch in range(position[0], stage_cfg.epochs):
            for index, batch in enumerate(sampler.epoch(epoch)):
                if (epoch, index) < position:
                    continue
                if step >= total_steps:
                    break
                every = table.iloc[list(batch.rows)]
                task = TaskType(every["task"].iloc[0])
                spec = TASKS[task]
                k = cfg.negatives_for(task.value)  # every row holds at least this many (checked at set-up)
                drawn = [rng.sample(list(n), k) for n in every["negative_ids"]]  # whole batch, every rank
                share = distributed.local_slice(len(every), rank, world)
                rows, negatives, b = every.iloc[share], drawn[share], share.stop - share.start
                ids = [corpus[i] for i in rows["query_id"]] + [corpus[i] for i in rows["positive_id"]]
                ids += [corpus[i] for negs in negatives for i in negs]
                objective = BatchObjective(
                    spec.in_batch, dims, weights, cfg.temperature, b, k, share.start, len(every),
                    teacher, cfg.kd_weight,
                    tuple(every["positive_id"]) if cfg.mask_duplicate_positives and spec.in_batch else None,
                )
                optimizer.zero_grad(set_to_none=True)
                loss, parts = backward(encoder, ids, objective, stage_cfg.grad_accumulation, lockstep=sharded)
                if not sharded:
                    distributed.sum_gradients(encoder.parameters())
                grad_norm = torch.nn.utils.clip_grad_norm_(encoder.parameters(), stage_cfg.grad_clip)
                if isinstance(grad_norm, DTensor):
                    grad_norm = grad_norm.full_tensor()
                optimizer.step()
                scheduler.step()
                step += 1
                samples += len(every)
                loss, parts = _global_values(loss, parts)
                last_loss = loss
                elapsed = time.perf_counter() - started
                record = {
                    "stage": stage, "step": step, "epoch": epoch, "source": batch.source, "task": task.value,
                    "hard_negatives": k, "samples": len(every),
                    "loss": loss, **parts, "grad_norm": float(grad_norm),
                    "lr": scheduler.get_last_lr()[0], "samples_per_s": samples / elapsed, "elapsed_s": elapsed,
                }
                log.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{loss:.3f}")
                bar.update()
                if on_step is not None:
                    on_step(step, encoder)
                if cfg.checkpoint_uri and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    log.flush()
                    state = {"step": step, "position": [epoch, index + 1], "rng": rng.getstate()}
                    if dcp_format:  # every rank writes its shards
                        checkpoint.save_sharded(cfg.checkpoint_uri, step, encoder.model, optimizer, scheduler, state, rank)
                    elif main_rank:
                        checkpoint.save(cfg.checkpoint_uri, step, encoder, optimizer, scheduler, state)

    # --- save
    out = Path(out_dir)
    weights = distributed.full_state_dict(encoder.model) if sharded else None  # every rank gathers
    if main_rank:
        encoder.model.save_pretrained(out, state_dict=weights)
        encoder.tokenizer.save_pretrained(out)
    distributed.barrier()
    seconds = time.perf_counter() - started
    return {
        "stage": stage, "steps": step, "seconds": seconds, "dims": dims, "loss": last_loss,
        "samples_per_s": samples / seconds if seconds else 0.0, "world_size": world,
        "state_bytes": state_bytes(encoder.model, optimizer),
    }


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """This rank's bytes of weights, gradients and optimizer state: its shards under FSDP (DTensor
    local tensors), the whole replica under DDP (16 bytes a parameter in fp32 AdamW)."""
    def local(t: torch.Tensor) -> torch.Tensor:
        return t.to_local() if isinstance(t, DTensor) else t

    tensors = [local(p) for p in model.parameters()]
    tensors += [local(p.grad) for p in model.parameters() if p.grad is not None]
    tensors += [local(v) for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim()]
    return sum(t.numel() * t.element_size() for t in tensors)


