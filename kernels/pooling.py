"""Pooling of token states into one vector per sequence, with Matryoshka prefix norms.

F2LLM-v2 embeds a text as the final hidden state of its last real token (EOS). Finding it from
the attention mask works for right padding (last 1 before the zeros) and left padding (position
L-1) alike: index = L - 1 - argmax(flip(mask)). Masked-mean pooling is the option for encoders.

`pool_with_norms` returns the raw pooled vector x [B, H] and, for each Matryoshka dim d, the
inverse prefix norm 1/||x[:d]|| [B, J]: the re-normalised prefix is x[:d] * inv_d, so every
dim's unit vector is one multiply away, and the InfoNCE kernel takes exactly these. Fused
(Triton, `_pool_fwd_kernel`): one program per sequence reads its mask, then only the hidden
states it needs (one row for last-token, the attended rows for mean) once, and derives every
prefix norm from the pooled vector in registers. Backward: with g_x and g_inv the upstream
gradients, d inv_d / d x_k = -x_k inv_d^3 for k < d, so

    dx = g_x - sum_d [k < d] g_inv_d * inv_d^3 * x

which is scattered to the last token's row, or spread as dx * mask / count over the sequence.
"""

from __future__ import annotations

from typing import Literal

import torch
import triton
import triton.language as tl
from f2llm.kernels.dispatch import ascending, at_least_fp32, launch, use_triton
from f2llm.kernels.infonce import EPS, prefix_inv_norms


# --- torch references
def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, L] mask -> [B] position of each row's last attended token."""
    length = attention_mask.shape[1]
    return length - 1 - attention_mask.flip(dims=[1]).to(torch.int64).argmax(dim=1)


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, L, H] states, [B, L] mask -> [B, H] state of each row's last attended token."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last_token_index(attention_mask)]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, L, H] states, [B, L] mask -> [B, H] mean over attended tokens."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def pool_with_norms_reference(
    hidden: torch.Tensor, attention_mask: torch.Tensor, mode: Literal["last", "mean"], dims: list[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    pool = last_token_pool if mode == "last" else mean_pool
    pooled = pool(at_least_fp32(hidden), attention_mask)
    return pooled, prefix_inv_norms(pooled, dims)


def pool_with_norms(
    hidden: torch.Tensor, attention_mask: torch.Tensor, mode: Literal["last", "mean"] = "last",
    dims: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, L, H], [B, L] -> (pooled [B, H] fp32, inverse prefix norms [B, len(dims)] in `dims` order)."""
    dims = dims or [hidden.shape[-1]]
    if not use_triton(hidden):
        return pool_with_norms_reference(hidden, attention_mask, mode, dims)
    up = ascending(dims)
    pooled, inv = FusedPool.apply(hidden, attention_mask, mode == "mean", up)
    return pooled, inv[:, [up.index(d) for d in dims]]


# --- Triton
@triton.jit
def _prefix_norm_terms(x, offs_h, dims_ptr, j: tl.constexpr, eps):
    """inverse norm of x[:d_j] and whether it was clamped (no gradient then)."""
    d = tl.load(dims_ptr + j)
    norm = tl.sqrt(tl.sum(tl.where(offs_h < d, x * x, 0.0), axis=0))
    return 1.0 / tl.maximum(norm, eps), norm > eps, d


@triton.jit
def _last_index(mask_ptr, b, L, stride_mb, SCAN_L: tl.constexpr):
    last = tl.full([], -1, tl.int32)  # a tensor from the start: compiled loops keep carried types
    for l0 in range(0, L, SCAN_L):
        ls = l0 + tl.arange(0, SCAN_L)
        m = tl.load(mask_ptr + b * stride_mb + ls, mask=ls < L, other=0)
        last = tl.maximum(last, tl.max(tl.where(m != 0, ls, -1), axis=0))
    return tl.maximum(last, 0)


@triton.jit
def _pool_fwd_kernel(
    h_ptr, mask_ptr, dims_ptr, out_ptr, inv_ptr,
    L, H, stride_hb, stride_hl, stride_mb, eps,
    MEAN: tl.constexpr, J: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_H: tl.constexpr, SCAN_L: tl.constexpr,
):
    b = tl.program_id(0)
    offs_h = tl.arange(0, BLOCK_H)
    h_ok = offs_h < H
    if MEAN:
        total = tl.zeros((BLOCK_H,), tl.float32)
        count = tl.full([], 0.0, tl.float32)
        for l0 in range(0, L, BLOCK_L):
            ls = l0 + tl.arange(0, BLOCK_L)
            m = tl.load(mask_ptr + b * stride_mb + ls, mask=ls < L, other=0).to(tl.float32)
            rows = tl.load(h_ptr + b * stride_hb + ls[:, None] * stride_hl + offs_h[None, :],
                           mask=(m != 0)[:, None] & h_ok[None, :], other=0.0).to(tl.float32)  # padding is never read
            total += tl.sum(rows * m[:, None], axis=0)
            count += tl.sum(m, axis=0)
        x = total / tl.maximum(count, 1.0)
    else:
        last = _last_index(mask_ptr, b, L, stride_mb, SCAN_L)
        x = tl.load(h_ptr + b * stride_hb + last * stride_hl + offs_h, mask=h_ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + b * H + offs_h, x, mask=h_ok)
    for j in tl.static_range(J):
        inv, _, _ = _prefix_norm_terms(x, offs_h, dims_ptr, j, eps)
        tl.store(inv_ptr + b * J + j, inv)


@triton.jit
def _pool_bwd_kernel(
    mask_ptr, dims_ptr, x_ptr, inv_ptr, gx_ptr, ginv_ptr, dh_ptr,
    L, H, stride_mb, stride_db, stride_dl, eps,
    MEAN: tl.constexpr, J: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_H: tl.constexpr, SCAN_L: tl.constexpr,
):
    """dh is pre-zeroed: last-token pooling writes one row per sequence."""
    b = tl.program_id(0)
    offs_h = tl.arange(0, BLOCK_H)
    h_ok = offs_h < H
    x = tl.load(x_ptr + b * H + offs_h, mask=h_ok, other=0.0)
    dx = tl.load(gx_ptr + b * H + offs_h, mask=h_ok, other=0.0)
    for j in tl.static_range(J):
        inv, unclamped, d = _prefix_norm_terms(x, offs_h, dims_ptr, j, eps)
        scale = tl.where(unclamped, tl.load(ginv_ptr + b * J + j) * inv * inv * inv, 0.0)
        dx -= tl.where(offs_h < d, scale * x, 0.0)
    if MEAN:
        count = tl.full([], 0.0, tl.float32)
        for l0 in range(0, L, SCAN_L):
            ls = l0 + tl.arange(0, SCAN_L)
            count += tl.sum(tl.load(mask_ptr + b * stride_mb + ls, mask=ls < L, other=0).to(tl.float32), axis=0)
        share = dx / tl.maximum(count, 1.0)
        for l0 in range(0, L, BLOCK_L):
            ls = l0 + tl.arange(0, BLOCK_L)
            m = tl.load(mask_ptr + b * stride_mb + ls, mask=ls < L, other=0).to(tl.float32)
            tl.store(dh_ptr + b * stride_db + ls[:, None] * stride_dl + offs_h[None, :], share[None, :] * m[:, None],
                     mask=(ls < L)[:, None] & h_ok[None, :])
    else:
        last = _last_index(mask_ptr, b, L, stride_mb, SCAN_L)
        tl.store(dh_ptr + b * stride_db + last * stride_dl + offs_h, dx, mask=h_ok)


def _launch_shape(H: int) -> dict:
    """Block shapes by the row width alone (one compiled kernel per model width, whatever the
    sequence length): a whole row in registers (H <= 8192 for every F2LLM-v2 size), a
    [BLOCK_L, BLOCK_H] tile of 8192 values per step of the mean (64 fp32 registers a thread at
    4 warps, 32 at 8), more warps for wide rows, and the mask scanned 1024 positions a step
    whatever the width (a 1-row tile would make last-token pooling of a 14B model walk an
    8192-token mask one position at a time). `aot.py` compiles each for sm_80/sm_90 and
    checks registers, spills and shared memory."""
    block_h = triton.next_power_of_2(H)
    return {"BLOCK_H": block_h, "BLOCK_L": max(1, 8192 // block_h), "SCAN_L": 1024,
            "num_warps": 8 if block_h >= 4096 else 4}


class FusedPool(torch.autograd.Function):
    """(hidden [B, L, H], mask [B, L], mean?, dims ascending) -> (pooled [B, H] fp32, inv norms [B, J])."""

    @staticmethod
    def forward(ctx, hidden, mask, mean, dims):
        B, L, H = hidden.shape
        if hidden.stride(-1) != 1:
            hidden = hidden.contiguous()
        mask = mask.contiguous()
        dims_t = torch.tensor(dims, dtype=torch.int32, device=hidden.device)
        pooled = torch.empty(B, H, dtype=torch.float32, device=hidden.device)
        inv = torch.empty(B, len(dims), dtype=torch.float32, device=hidden.device)
        launch(
            _pool_fwd_kernel, (B,), h_ptr=hidden, mask_ptr=mask, dims_ptr=dims_t, out_ptr=pooled, inv_ptr=inv,
            L=L, H=H, stride_hb=hidden.stride(0), stride_hl=hidden.stride(1), stride_mb=mask.stride(0), eps=EPS,
            MEAN=mean, J=len(dims), **_launch_shape(H),
        )
        ctx.save_for_backward(mask, dims_t, pooled, inv)
        ctx.meta = (hidden.shape, hidden.dtype, mean)
        return pooled, inv

    @staticmethod
    def backward(ctx, grad_pooled, grad_inv):
        mask, dims_t, pooled, inv = ctx.saved_tensors
        shape, dtype, mean = ctx.meta
        B, L, H = shape
        dh = torch.zeros(shape, dtype=torch.float32, device=pooled.device)
        zeros = torch.zeros_like
        launch(
            _pool_bwd_kernel, (B,), mask_ptr=mask, dims_ptr=dims_t, x_ptr=pooled, inv_ptr=inv,
            gx_ptr=(grad_pooled if grad_pooled is not None else zeros(pooled)).float().contiguous(),
            ginv_ptr=(grad_inv if grad_inv is not None else zeros(inv)).float().contiguous(), dh_ptr=dh,
            L=L, H=H, stride_mb=mask.stride(0), stride_db=dh.stride(0), stride_dl=dh.stride(1), eps=EPS,
            MEAN=mean, J=len(dims_t), **_launch_shape(H),
        )
        return dh.to(dtype), None, None, None
