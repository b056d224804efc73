"""Will a size train on these GPUs? Bytes per GPU by strategy, and the GPUs and nodes it needs.

P parameters (a Qwen3 decoder without LM head, as the embedding model is: token embedding V x h,
per layer q/k/v/o projections, q/k RMSNorms of head_dim, two RMSNorms of h and the SwiGLU MLP
3 x h x m, then a final norm; the recipe's stated counts are the unit test). AdamW with fp32
master weights and moments, bf16 compute, N GPUs:

- DDP: every rank holds a full replica: fp32 weights 4P + fp32 gradients 4P + moments 8P = 16P.
- FSDP (`fully_shard`, a unit per decoder layer, the embedding with the root; MixedPrecisionPolicy
  bf16 params, fp32 reduce): the 16P state is sharded, 16P/N, plus the units in flight unsharded:
  bf16 parameters of the root and of two layers (the current one and the prefetched next) and
  the fp32 gradient of one layer before its reduce-scatter.
- FSDP + CPU offload: the sharded state lives in host memory (16P/N per rank); the GPU keeps only
  the units in flight.

Activations, with gradient checkpointing (full recomputation, Korthikanti et al. 2022), bf16, for
b sequences of T tokens in one pass: every layer's input is kept, 2·L·b·T·h bytes, and one layer
is recomputed and back-propagated at a time, 2 x 2·b·T·w bytes (its values and their gradients),
w = 2h (norms) + (heads + 2 kv)·head_dim (q, k, v) + heads·head_dim (attention output; SDPA / flash
keep no T x T scores) + h (o projection) + 3m (gate, up, gate·up). The recipe's global batch is
512 rows of query + positive + 7 negatives (retrieval, the most) at max_length 1024, counted at
full length (an upper bound: queries are short). A rank's share runs as `micro` GradCache
micro-batches (config `grad_accumulation`), so activations are those of one micro-batch; the plan
takes the fewest micro-batches that fit, up to MAX_MICRO.

Estimates for choosing a layout, not a promise: allocator fragmentation, CUDA context (~1 GB),
NCCL buffers and the distillation teacher are left to the HEADROOM fraction of each GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from f2llm.model.recipes import RECIPES, VOCAB_SIZE, SizeRecipe
from f2llm.tasks import TASKS, TaskType

Strategy = Literal["DDP", "FSDP", "FSDP + offload"]
STRATEGIES: tuple[Strategy, ...] = ("DDP", "FSDP", "FSDP + offload")
SEQUENCES_PER_ROW = 2 + TASKS[TaskType.retrieval].hard_negatives  # query, positive, 7 negatives
HEADROOM = 0.1  # of each GPU's memory, for what the estimate leaves out
MAX_MICRO = 64  # GradCache micro-batches a rank's share may be split into
GB = 1e9


def parameters(r: SizeRecipe) -> int:
    return VOCAB_SIZE * r.hidden + r.layers * layer_parameters(r) + r.hidden


def layer_parameters(r: SizeRecipe) -> int:
    attention = r.hidden * r.head_dim * (2 * r.heads + 2 * r.kv_heads) + 2 * r.head_dim
    return attention + 2 * r.hidden + 3 * r.hidden * r.mlp


def activation_bytes(r: SizeRecipe, sequences: int, tokens: int) -> int:
    """One pass over `sequences` x `tokens` with gradient checkpointing (module docstring)."""
    width = 2 * r.hidden + (r.heads + 2 * r.kv_heads) * r.head_dim + r.heads * r.head_dim + r.hidden + 3 * r.mlp
    bt = sequences * tokens
    return 2 * r.layers * bt * r.hidden + 2 * 2 * bt * width


@dataclass(frozen=True)
class Fit:
    strategy: Strategy
    gpus: int
    state_gb: float  # per GPU: weights, gradients, optimizer moments (and units in flight)
    host_gb: float  # per rank in host memory (offload)
    activation_gb: float  # one micro-batch
    micro_batches: int | None  # None: does not fit at any split

    @property
    def fits(self) -> bool:
        return self.micro_batches is not None

    @property
    def total_gb(self) -> float:
        return self.state_gb + self.activation_gb


def fit(size: str, strategy: Strategy, gpus: int, gpu_memory_gb: float, max_length: int = 1024) -> Fit:
    """One strategy for `size` on `gpus` GPUs of `gpu_memory_gb` (module docstring's formulas)."""
    r = RECIPES[size]
    p, layer = parameters(r), layer_parameters(r)
    root = VOCAB_SIZE * r.hidden + r.hidden
    in_flight = 2 * (root + 2 * layer) + 4 * layer  # bf16 root + 2 layers, fp32 grads of one layer
    state = {"DDP": 16 * p, "FSDP": 16 * p / gpus + in_flight, "FSDP + offload": in_flight}[strategy]
    host = 16 * p / gpus if strategy == "FSDP + offload" else 0.0
    share = math.ceil(r.global_batch * SEQUENCES_PER_ROW / gpus)
    budget = gpu_memory_gb * GB * (1 - HEADROOM) - state
    micro = next((m for m in range(1, min(MAX_MICRO, share) + 1)
                  if activation_bytes(r, math.ceil(share / m), max_length) <= budget), None)
    act = activation_bytes(r, math.ceil(share / (micro or min(MAX_MICRO, share))), max_length)
    return Fit(strategy, gpus, state / GB, host / GB, act / GB, micro)


def plan(size: str, gpus: int, gpu_memory_gb: float, max_length: int = 1024) -> list[Fit]:
    """Every strategy for `size` on `gpus` GPUs: what `f2llm plan SIZE` prints."""
    return [fit(size, s, gpus, gpu_memory_gb, max_length) for s in STRATEGIES]


def layout(size: str, gpu_memory_gb: float, gpus_per_node: int = 8, max_length: int = 1024,
           min_gpus: int | None = None, max_gpus: int = 1024) -> tuple[Strategy, int, int] | None:
    """How the recipe trains `size` (on whole nodes of `gpus_per_node`, as it does, unless
    `min_gpus` says fewer): the fewest GPUs at which a strategy fits, DDP preferred (no
    gathers), then FSDP, then FSDP + offload. -> (strategy, GPUs, nodes), or None if nothing fits."""
    start = min_gpus or gpus_per_node
    counts = [g for g in (1, 2, 4) if start <= g < gpus_per_node] + list(range(gpus_per_node, max_gpus + 1, gpus_per_node))
    for g in counts:
        for s in STRATEGIES:
            if fit(size, s, g, gpu_memory_gb, max_length).fits:
                return s, g, math.ceil(g / gpus_per_node)
    return None
