"""Data parallelism for the trainer: torchrun ranks (gloo on CPU, NCCL on GPU).

Every rank holds the whole model (DDP) or a shard of it (FSDP2, `shard`) and a contiguous slice
of each global batch. The in-batch InfoNCE needs every positive of the global batch, so
positives are all-gathered with a gather that keeps gradients (the published code's gather
does not: its remote positives are constants). Each rank's loss is its *sum* over local
queries divided by the global batch size; summing gradients over ranks (all-reduce SUM) then
gives exactly the gradient of the global mean, so W processes match one process with the same
global batch.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F


def init() -> tuple[int, int]:
    """(rank, world size); joins the torchrun process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def device() -> torch.device:
    """This rank's device: its GPU (LOCAL_RANK) under CUDA, else the CPU."""
    if torch.cuda.is_available():
        index = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def local_slice(n: int, rank: int, world: int) -> slice:
    """Contiguous share of n rows for a rank (sizes differ by at most one)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows (in rank order), differentiably; rows may differ by rank."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    import torch.distributed.nn.functional as dist_fn

    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))  # NCCL: sizes on the GPU too
    longest = int(max(sizes))
    padded = F.pad(x, (0, 0, 0, longest - x.shape[0]))
    parts = dist_fn.all_gather(padded)
    return torch.cat([part[: int(n)] for part, n in zip(parts, sizes)])


def shard(model: torch.nn.Module, layers, *, bf16: bool, offload: bool) -> None:
    """FSDP2 (`fully_shard`) in place: a unit per decoder layer, the embedding and final norm with
    the root; parameters, gradients and AdamW state sharded over ranks (16 P / W bytes a rank).
    bf16: parameters gathered in bf16, gradients reduced in fp32 (the recipe's mixed precision).
    Gradients are *summed* over ranks, not averaged, as `sum_gradients` does for DDP (each rank's
    loss is already scaled by its share of the global batch), and by a plain SUM: gloo has no
    PREMUL_SUM."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    options = {
        "mp_policy": MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16
        else MixedPrecisionPolicy(),
        "offload_policy": CPUOffloadPolicy() if offload else OffloadPolicy(),
    }
    units = [*layers, model]
    for unit in units:
        fully_shard(unit, **options)
    for unit in units:  # per unit: each has its own parameter group and reduce-scatter
        unit.set_gradient_divide_factor(1.0)
        unit.set_force_sum_reduction_for_comms(True)


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every rank calls this (a collective); the whole model's tensors on the CPU."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def sum_gradients(parameters) -> None:
    """DDP's gradient sync (FSDP's reduce-scatter does it in backward)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
