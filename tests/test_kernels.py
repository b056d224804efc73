"""Each Triton kernel (interpreter on CPU, compiled on a GPU) and the chunked torch InfoNCE
against plain references, forward and gradients, on odd shapes."""

import math

import pytest
import torch
import torch.nn.functional as F

from f2llm.kernels import distillation_mse, in_batch_infonce, in_batch_matryoshka_infonce, pool_with_norms
from f2llm.kernels.distill import distillation_mse_reference
from f2llm.kernels.pooling import last_token_pool, mean_pool

from tolerance import GPU_KERNEL_REL, assert_close_scaled, gradient_scale

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Relative to the scale of what is compared (tests/tolerance.py). fp32: the interpreter's tl.dot
# is exact fp32 (~80 units of roundoff over sums of up to ~1000 terms); a GPU's runs in TF32.
REL = {"cpu": 1e-5, "cuda": GPU_KERNEL_REL}[DEVICE]


def matryoshka(h: int) -> list[int]:
    return sorted({d for d in (8, 16, 32, 64, 128, 256, 512, 1024) if d < h} | {h}, reverse=True)


@pytest.fixture
def backend(monkeypatch):
    def use(name: str) -> None:
        monkeypatch.setenv("F2LLM_KERNELS", name)

    return use


def _mask(lengths: list[int], L: int, side: str) -> torch.Tensor:
    mask = torch.zeros(len(lengths), L, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1 if side == "right" else 0
        if side == "left":
            mask[i, L - n :] = 1
    return mask.to(DEVICE)


POOL_CASES = [  # B, L, H, lengths (1 = all padding but one token)
    (1, 1, 8, [1]),
    (1, 9, 24, [9]),
    (3, 7, 33, [1, 7, 4]),
    (5, 13, 100, [13, 1, 6, 2, 9]),
    (2, 5, 1030, [5, 1]),
]


@pytest.mark.parametrize("B,L,H,lengths", POOL_CASES)
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("mode", ["last", "mean"])
def test_fused_pooling_matches_reference(backend, B, L, H, lengths, side, mode):
    g = torch.Generator().manual_seed(B * L + H)
    mask = _mask(lengths, L, side)
    hidden = torch.randn(B, L, H, generator=g).to(DEVICE).requires_grad_(True)
    dims = matryoshka(H)
    up_pooled, up_inv = torch.randn(B, H, generator=g).to(DEVICE), torch.randn(B, len(dims), generator=g).to(DEVICE)
    results = {}
    for name in ("torch", "triton"):
        backend(name)
        pooled, inv = pool_with_norms(hidden, mask, mode, dims)
        ((pooled * up_pooled).sum() + (inv * up_inv).sum()).backward()
        results[name] = (pooled.detach(), inv.detach(), hidden.grad.clone())
        hidden.grad = None
    for got, want, what in zip(results["triton"], results["torch"], ("pooled", "inverse norms", "gradient")):
        assert_close_scaled(got, want, rel=REL, msg=what)
    # and the reference itself against hand-picked rows
    ref = last_token_pool(hidden, mask) if mode == "last" else mean_pool(hidden, mask)
    assert_close_scaled(results["torch"][0], ref, rel=1e-6)
    full = results["torch"][1][:, 0]
    assert_close_scaled(full, 1 / ref.detach().norm(dim=-1), rel=1e-6)


def test_fused_pooling_reads_bf16(backend):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 6, 40, generator=g).to(DEVICE, torch.bfloat16)
    mask = _mask([6, 1, 3], 6, "right")
    backend("triton")
    pooled, inv = pool_with_norms(hidden, mask, "mean", [40, 16, 8])
    want, want_inv = pool_with_norms(hidden.float(), mask, "mean", [40, 16, 8])
    assert_close_scaled(pooled, want, rel=REL)  # loads upcast, fp32 sums
    assert_close_scaled(inv, want_inv, rel=REL)


def naive_in_batch(q, p, dims, tau, offset):
    return torch.stack([
        in_batch_infonce(F.normalize(q[:, :d], dim=-1), F.normalize(p[:, :d], dim=-1), tau, offset) for d in dims
    ])


INFONCE_CASES = [  # B queries, M positives, H, offset of the queries' own positives
    (1, 1, 24, 0),
    (5, 9, 40, 3),
    (37, 37, 72, 0),
    (20, 70, 130, 10),
    (17, 17, 1024, 0),
]


@pytest.mark.parametrize("B,M,H,offset", INFONCE_CASES)
@pytest.mark.parametrize("name", ["triton", "torch"])
def test_tiled_infonce_matches_naive(backend, B, M, H, offset, name):
    g = torch.Generator().manual_seed(B + M + H)
    q = torch.randn(B, H, generator=g).to(DEVICE).requires_grad_(True)
    p = torch.randn(M, H, generator=g).to(DEVICE).requires_grad_(True)
    dims = matryoshka(H)
    weights = torch.rand(len(dims), generator=g).to(DEVICE)
    want = naive_in_batch(q, p, dims, 0.05, offset)
    (want * weights).sum().backward()
    want_q, want_p = q.grad.clone(), p.grad.clone()
    q.grad = p.grad = None
    backend(name)
    got = in_batch_matryoshka_infonce(q, p, dims, 0.05, offset, chunk=8)  # chunks do not divide B
    (got * weights).sum().backward()
    # each dim's loss is an LSE minus a logit, both bounded by 1/tau + log M
    assert_close_scaled(got, want, rel=REL, scale=1 / 0.05 + math.log(M), msg="loss")
    assert_close_scaled(q.grad, want_q, rel=REL, scale=gradient_scale(q, dims, weights, 0.05, B), msg="dq")
    assert_close_scaled(p.grad, want_p, rel=REL, scale=gradient_scale(p, dims, weights, 0.05, B), msg="dp")


def test_tiled_infonce_against_a_hand_value(backend):
    # two queries, two positives, one dim: L = mean_i (log(e^{s_i1/t} + e^{s_i2/t}) - s_ii/t)
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]], device=DEVICE)
    p = torch.tensor([[3.0, 0.0], [1.0, 1.0]], device=DEVICE)
    c = 1 / math.sqrt(2)
    row0 = math.log(math.exp(1 / 0.5) + math.exp(c / 0.5)) - 1 / 0.5
    row1 = math.log(math.exp(0.0) + math.exp(c / 0.5)) - c / 0.5
    for name in ("triton", "torch"):
        backend(name)
        got = in_batch_matryoshka_infonce(q, p, [2], 0.5)
        assert got.item() == pytest.approx((row0 + row1) / 2, rel=1e-5)


@pytest.mark.parametrize("n,student,teacher", [(1, 8, 8), (7, 33, 96), (4, 1030, 2048)])
def test_fused_distillation_matches_reference(backend, n, student, teacher):
    g = torch.Generator().manual_seed(n)
    s = torch.randn(n, student, generator=g).to(DEVICE).requires_grad_(True)
    t = torch.randn(n, teacher, generator=g).to(DEVICE).requires_grad_(True)
    want = distillation_mse_reference(s, t)
    want.backward()
    want_grad = s.grad.clone()
    s.grad = None
    backend("triton")
    got = distillation_mse(s, t)
    (got * 1.0).backward()
    assert_close_scaled(got, want, rel=REL, msg="loss")
    assert_close_scaled(s.grad, want_grad, rel=REL, msg="gradient")
    assert t.grad is None  # the teacher is frozen
