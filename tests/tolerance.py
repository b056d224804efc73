"""Comparisons whose tolerance follows the scale of what they compare.

Rounding error is relative to the size of the terms a result was summed from, not to the result:
a gradient that is exactly zero in real arithmetic (the in-batch InfoNCE of one query against one
positive) comes out as rounding noise of the size of the terms that cancelled, and that noise
differs between CPUs (AVX-512 and AVX2 kernels sum in different orders). A bare atol at such a
point fails on one machine and passes on another. So every comparison here is

    max |got - want| <= rel * scale

with `scale` the size of the summed terms (by default the reference's largest magnitude; a caller
passes the term size where the result can cancel to ~0) and `rel` a small multiple of the dtype's
unit roundoff times the number of terms: tight enough that a real bug (a wrong factor, a dropped
term, an off-by-one index) moves the result by a sizeable fraction of `scale`.
"""

from __future__ import annotations

import numpy as np
import torch


# The Triton kernels on a GPU against fp32/fp64 references: their dots run on tensor cores (TF32,
# 10 mantissa bits, or bf16 for bf16 inputs), a few units of 2^-11 over sums of many terms.
GPU_KERNEL_REL = 2e-3


def gradient_scale(x: torch.Tensor, dims: list[int], weights: torch.Tensor, tau: float, batch: int) -> float:
    """The size of one term of the in-batch InfoNCE's gradient w.r.t. x's rows (what rounding is
    relative to): |d cos(x[:d], y[:d]) / dx| <= 1 / ||x[:d]||, times w_d / (tau B), over the dims.
    With B = M = 1 the loss is identically 0 and its gradient is these terms cancelling."""
    norms = torch.stack([x.detach()[:, :d].norm(dim=1) for d in dims], dim=1)  # [N, dims]
    return float((weights / (tau * batch * norms)).sum(dim=1).max())


def _tensor(x) -> torch.Tensor:
    return (x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))).detach().double()


def assert_close_scaled(got, want, *, rel: float, scale: float | None = None, msg: str = "") -> None:
    """max |got - want| <= rel * scale; `scale` defaults to max |want| (the reference's size)."""
    got, want = _tensor(got), _tensor(want)
    assert got.shape == want.shape, f"{msg} shapes differ: {tuple(got.shape)} vs {tuple(want.shape)}"
    if not want.numel():
        return
    scale = float(want.abs().max()) if scale is None else float(scale)
    err = float((got - want).abs().max())
    assert err <= rel * scale, f"{msg} max |got - want| = {err:.3g} > {rel:g} x scale {scale:.3g}".strip()


def assert_same_training(got: dict, want: dict, *, lr: float, steps: int) -> None:
    """Two training runs over the same batches (other world sizes, a resume between): weights agree
    on the scale lr x steps. Adam moves a weight by about lr a step whatever its gradient's size,
    so two runs can differ by at most ~2 lr a step; rounding differences in the gradients (ranks
    bucket and reduce their own rows) become relative update differences, so the bulk agrees to
    1e-4 of that scale (measured: 99.9% within 1.5e-5 of it), while an element whose gradient is
    (almost) zero can step the other way. A real bug (gradients not summed, a halved unit, wrong
    offsets, a step replayed or lost) moves most weights by ~lr a step."""
    assert got.keys() == want.keys()
    budget = lr * steps
    total = off = 0
    for name in want:
        assert_close_scaled(got[name], want[name], rel=2.0, scale=budget, msg=name)
        off += int(((_tensor(got[name]) - _tensor(want[name])).abs() > 1e-4 * budget).sum())
        total += want[name].numel()
    assert off <= 1e-3 * total, f"{off} of {total} weights differ by more than 1e-4 of lr * steps"
