"""The tensor-core input type the InfoNCE kernels pick on a GPU (dispatch.dot_precision), held to
the GPU tolerance of test_kernels.py through a torch emulation of their arithmetic (the
interpreter's bf16 tl.dot cannot say): loss and both gradients against an fp64 reference."""

import math

import pytest
import torch

from f2llm.kernels.dot_emulation import emulated_in_batch_infonce, reference_in_batch_infonce, round_tf32
from f2llm.model.matryoshka import matryoshka_dims

from tolerance import GPU_KERNEL_REL, assert_close_scaled, gradient_scale

TAU = 0.05


def test_tf32_truncation_by_hand():
    one_ulp = 2.0**-10  # TF32 keeps 10 mantissa bits; the tensor cores drop the rest
    x = torch.tensor([1 + one_ulp / 2, 1 + 3 * one_ulp / 4, -(1 + 3 * one_ulp / 2), 1 + one_ulp, 3.0, 0.0])
    assert round_tf32(x).tolist() == [1.0, 1.0, -(1 + one_ulp), 1 + one_ulp, 3.0, 0.0]


def test_emulation_without_rounding_is_the_reference():
    g = torch.Generator().manual_seed(1)
    q, p = torch.randn(40, 64, generator=g), torch.randn(40, 64, generator=g)
    dims = matryoshka_dims(64)
    got = emulated_in_batch_infonce(q, p, dims, TAU, "fp32")
    assert_close_scaled(got, reference_in_batch_infonce(q, p, dims, TAU), rel=1e-6, scale=1 / TAU + math.log(40))


def _errors(q, p, dims, dot):
    """(loss, dq, dp) errors of the emulated kernels, each over its scale (test_kernels.py's)."""
    weights = torch.rand(len(dims), generator=torch.Generator().manual_seed(2))
    qd, pd = q.double().requires_grad_(True), p.double().requires_grad_(True)
    want = reference_in_batch_infonce(qd, pd, dims, TAU)
    (want * weights.double()).sum().backward()
    qe, pe = q.clone().requires_grad_(True), p.clone().requires_grad_(True)
    got = emulated_in_batch_infonce(qe, pe, dims, TAU, dot)
    (got * weights).sum().backward()
    batch = q.shape[0]
    return (
        float((got.detach().double() - want.detach()).abs().max()) / (1 / TAU + math.log(batch)),
        float((qe.grad.double() - qd.grad).abs().max()) / gradient_scale(q, dims, weights, TAU, batch),
        float((pe.grad.double() - pd.grad).abs().max()) / gradient_scale(p, dims, weights, TAU, batch),
    )


def _inputs(batch, width, kind, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, width, generator=g)
    p = q + 0.5 * torch.randn(batch, width, generator=g) if kind == "positives near queries" else torch.randn(
        batch, width, generator=g)
    return q, p


@pytest.mark.parametrize("width", [64, 1024])
@pytest.mark.parametrize("kind", ["independent", "positives near queries"])
def test_bf16_inputs_take_bf16_dots_within_tolerance(width, kind):
    # bf16 q/p (a bf16 model's states): bf16 operands are their own values; only the backward's
    # fp32 gradient tile is rounded to bf16
    q, p = (x.bfloat16().float() for x in _inputs(256, width, kind, width))
    for err, what in zip(_errors(q, p, matryoshka_dims(width), "bf16"), ("loss", "dq", "dp")):
        assert err <= GPU_KERNEL_REL, f"{what}: {err:.2e} of its scale"


@pytest.mark.parametrize("width", [64, 1024])
@pytest.mark.parametrize("kind", ["independent", "positives near queries"])
def test_fp32_inputs_take_tf32_dots_within_tolerance(width, kind):
    q, p = _inputs(256, width, kind, width)
    for err, what in zip(_errors(q, p, matryoshka_dims(width), "tf32"), ("loss", "dq", "dp")):
        assert err <= GPU_KERNEL_REL, f"{what}: {err:.2e} of its scale"


def test_bf16_dots_on_fp32_inputs_would_miss_the_gradient_tolerance():
    """Why fp32 inputs are not rounded to bf16: the loss would hold, the gradients would not."""
    q, p = _inputs(256, 64, "independent", 64)
    loss, dq, dp = _errors(q, p, matryoshka_dims(64), "bf16")
    assert loss <= GPU_KERNEL_REL < max(dq, dp)
