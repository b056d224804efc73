"""Which implementation an op runs, and how its Triton kernels are launched and tuned.

`F2LLM_KERNELS=torch` forces the torch path everywhere (debugging a GPU run against the
reference); `F2LLM_KERNELS=triton` forces Triton even on CPU tensors, which only works under
`TRITON_INTERPRET=1` (how the tests run the kernels on a machine without a GPU).

Every kernel launch goes through `launch`, so `recording()` can list the exact launches the ops
make (kernel, grid, arguments) without running them: `aot.py` runs the ops on meta tensors under
it and compiles what they would launch, for a GPU this machine does not have.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import triton


def use_triton(x: torch.Tensor) -> bool:
    forced = os.environ.get("F2LLM_KERNELS", "")
    if forced == "torch":
        return False
    return forced == "triton" or x.is_cuda


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def dot_precision(dtype: torch.dtype) -> str:
    """The InfoNCE kernels' tl.dot inputs for q/p of `dtype` (sums are fp32 in every case).

    GPU: bf16 inputs stay bf16 (their forward products are exact either way; half the tile
    footprint of TF32 and twice its rate), fp32 inputs run as TF32: rounding fp32 inputs to bf16
    moves the gradients past the GPU test tolerance (dot_emulation.py, tests/test_dot_precision.py).
    Interpreter: exact fp32 ("ieee"; its bf16 tl.dot is wrong)."""
    if interpreting():
        return "ieee"
    return "bf16" if dtype == torch.bfloat16 else "tf32"


def ascending(dims: list[int]) -> list[int]:
    """Matryoshka dims from the smallest prefix up, as the kernels walk them."""
    return sorted(dims)


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 are upcast for reductions and log-sum-exps; fp64 stays fp64 (exactness checks)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def autotuned(configs: list[triton.Config], key: list[str], **kwargs):
    """`triton.autotune` over `configs` on a GPU; the interpreter (which cannot time a kernel)
    runs the first. The kernel keeps every config in `.configs_all` for `aot.py` to compile."""
    def wrap(kernel):
        tuned = triton.autotune(configs=configs[:1] if interpreting() else configs, key=key, **kwargs)(kernel)
        tuned.configs_all = configs
        return tuned

    return wrap


@dataclass(frozen=True)
class Launch:
    kernel: object  # a JITFunction, or an Autotuner over one
    grid: object  # a tuple, or a function of the chosen config (autotuned kernels)
    args: dict


_recorded: list[Launch] | None = None


def launch(kernel, grid, **args) -> None:
    if _recorded is not None:
        _recorded.append(Launch(kernel, grid, args))
        return
    kernel[grid](**args)


@contextlib.contextmanager
def recording() -> Iterator[list[Launch]]:
    """Launches are recorded, not run (the ops' outputs stay unwritten: use meta tensors)."""
    global _recorded
    previous, _recorded = _recorded, []
    try:
        yield _recorded
    finally:
        _recorded = previous
