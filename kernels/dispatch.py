"""Which implementation an op runs: Triton on CUDA tensors, the torch path elsewhere.

`F2LLM_KERNELS=torch` forces the torch path everywhere (debugging a GPU run against the
reference); `F2LLM_KERNELS=triton` forces Triton even on CPU tensors, which only works under
`TRITON_INTERPRET=1` (how the tests run the kernels on a machine without a GPU).
"""

from __future__ import annotations

import os

import torch


def use_triton(x: torch.Tensor) -> bool:
    forced = os.environ.get("F2LLM_KERNELS", "")
    if forced == "torch":
        return False
    return forced == "triton" or x.is_cuda


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def dot_precision() -> str:
    """fp32 tl.dot: exact ("ieee") in the interpreter; TF32 tensor cores on a GPU."""
    return "ieee" if interpreting() else "tf32"


def ascending(dims: list[int]) -> list[int]:
    """Matryoshka dims from the smallest prefix up, as the kernels walk them."""
    return sorted(dims)


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 are upcast for reductions and log-sum-exps; fp64 stays fp64 (exactness checks)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))
