"""Distillation term of F2LLM-v2: torch reference and a fused Triton kernel.

MSE between the student's raw (unnormalised) EOS states and the frozen teacher's, the teacher's
vectors truncated to the student's width (it relies on the teacher's Matryoshka prefix):

    L_kd = 1/(N * D_s) * sum_{i, d < D_s} (s_id - t_id)^2        dL/ds_id = 2 (s_id - t_id) / (N * D_s)

The trainer sums it over the query, positive and negative states (recipe: kd_weight 1.0).
Fused: one program per row reads the student row and the teacher's prefix in place (no
truncated copy of the teacher), writes the row's sum of squares; the backward recomputes the
difference rather than keeping it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from f2llm.kernels.dispatch import launch, use_triton


def distillation_mse_reference(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student.float(), teacher[..., : student.shape[-1]].detach().float())


def distillation_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """student [N, D_s], teacher [N, D_t >= D_s] (no gradient flows into the teacher)."""
    width = student.shape[-1]
    if teacher.shape[-1] < width:
        raise ValueError(f"teacher width {teacher.shape[-1]} is smaller than the student's {width}")
    if use_triton(student):
        return FusedDistillMSE.apply(student, teacher.detach())
    return distillation_mse_reference(student, teacher)


@triton.jit
def _sq_diff_kernel(s_ptr, t_ptr, out_ptr, D, stride_s, stride_t, BLOCK_D: tl.constexpr):
    row = tl.program_id(0)
    total = tl.zeros((BLOCK_D,), tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs = d0 + tl.arange(0, BLOCK_D)
        s = tl.load(s_ptr + row * stride_s + offs, mask=offs < D, other=0.0).to(tl.float32)
        t = tl.load(t_ptr + row * stride_t + offs, mask=offs < D, other=0.0).to(tl.float32)
        total += (s - t) * (s - t)
    tl.store(out_ptr + row, tl.sum(total, axis=0))


@triton.jit
def _sq_diff_bwd_kernel(s_ptr, t_ptr, g_ptr, ds_ptr, D, stride_s, stride_t, inv_count, BLOCK_D: tl.constexpr):
    """g (the upstream gradient) is read on the device: no host sync in the backward."""
    row = tl.program_id(0)
    scale = 2.0 * tl.load(g_ptr) * inv_count
    for d0 in range(0, D, BLOCK_D):
        offs = d0 + tl.arange(0, BLOCK_D)
        s = tl.load(s_ptr + row * stride_s + offs, mask=offs < D, other=0.0).to(tl.float32)
        t = tl.load(t_ptr + row * stride_t + offs, mask=offs < D, other=0.0).to(tl.float32)
        tl.store(ds_ptr + row * D + offs, scale * (s - t), mask=offs < D)


class FusedDistillMSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student, teacher):
        n, width = student.shape
        student = student if student.stride(-1) == 1 else student.contiguous()
        teacher = teacher if teacher.stride(-1) == 1 else teacher.contiguous()
        rows = torch.empty(n, dtype=torch.float32, device=student.device)
        block = min(1024, triton.next_power_of_2(width))
        launch(_sq_diff_kernel, (n,), s_ptr=student, t_ptr=teacher, out_ptr=rows, D=width,
               stride_s=student.stride(0), stride_t=teacher.stride(0), BLOCK_D=block)
        ctx.save_for_backward(student, teacher)
        return rows.sum() / (n * width)

    @staticmethod
    def backward(ctx, grad):
        student, teacher = ctx.saved_tensors
        n, width = student.shape
        ds = torch.empty(n, width, dtype=torch.float32, device=student.device)
        block = min(1024, triton.next_power_of_2(width))
        launch(_sq_diff_bwd_kernel, (n,), s_ptr=student, t_ptr=teacher, g_ptr=grad.float().contiguous(), ds_ptr=ds,
               D=width, stride_s=student.stride(0), stride_t=teacher.stride(0), inv_count=1.0 / (n * width),
               BLOCK_D=block)
        return ds.to(student.dtype), None
