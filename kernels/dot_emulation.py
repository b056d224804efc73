"""The InfoNCE kernels' tensor-core arithmetic, emulated in torch on the CPU.

On a GPU the tiled InfoNCE's three products (the forward's prefix dots S = q p^T, the backward's
dq += G p and dp += G^T q) run on tensor cores: each operand is rounded to the dot's input type,
the products are exact, the sums fp32. Which input type decides speed and footprint (a bf16
tile is half a TF32 one in shared memory and registers, and runs at twice the rate) and how far
the loss moves. Triton's interpreter cannot say (its bf16 `tl.dot` is wrong, STACK.md), so this
replays the kernels' arithmetic with the rounding made explicit:

    S_d = R(q[:, :d]) R(p[:, :d])^T  (fp32 sums)      lse_d = LSE_m(S_d * iq_d * ip_d / tau)
    loss_d = mean_i (lse_d(i) - q_i[:d].p_own[:d] * iq_d(i) ip_d(own) / tau)   (target term unrounded)
    backward: dq = R(G) R(p), dp = R(G)^T R(q), G the gradient w.r.t. S

with R the rounding of the dot's input type: bf16 (round to nearest even, cvt.rn.bf16.f32; the
kernel converts explicitly) or TF32 (10 mantissa bits, truncated: the fp32 operands are passed
unconverted). The inverse norms iq, ip are fp32 from the
unrounded inputs, as the kernels receive them. `tests/test_dot_precision.py` holds the chosen
type's loss and gradients to the GPU tolerance of tests/test_kernels.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from f2llm.kernels.infonce import prefix_inv_norms, prefix_sums


def round_bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(x.dtype)


def round_tf32(x: torch.Tensor) -> torch.Tensor:
    """fp32 -> TF32 (1 sign, 8 exponent, 10 mantissa bits) as Triton's tf32 tl.dot gets it: the
    fp32 registers go to the tensor cores as they are, which ignore the low 13 mantissa bits
    (truncation toward zero, not cvt.rna's rounding)."""
    bits = x.float().view(torch.int32)
    return (bits & ~0x1FFF).view(torch.float32).to(x.dtype)


ROUNDING = {"bf16": round_bf16, "tf32": round_tf32, "fp32": lambda x: x}


class RoundedProduct(torch.autograd.Function):
    """a [N, d] x b [M, d] -> R(a) R(b)^T in fp32; backward rounds the gradient's operands too."""

    @staticmethod
    def forward(ctx, a, b, dot):
        ctx.save_for_backward(a, b)
        ctx.rnd = ROUNDING[dot]
        return ctx.rnd(a.float()) @ ctx.rnd(b.float()).T

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        rnd, g = ctx.rnd, ctx.rnd(grad)
        return g @ rnd(b.float()), g.T @ rnd(a.float()), None


def emulated_in_batch_infonce(
    query: torch.Tensor, positives: torch.Tensor, dims: list[int], temperature: float, dot: str, offset: int = 0,
) -> torch.Tensor:
    """The in-batch loss per dim [len(dims)], as the kernels compute it with `dot` inputs (fp32 inputs)."""
    iq, ip = prefix_inv_norms(query, dims), prefix_inv_norms(positives, dims)
    own = torch.arange(offset, offset + query.shape[0])
    target = prefix_sums(query * positives[own], dims) * iq * ip[own] / temperature
    losses = []
    for j, d in enumerate(dims):
        scores = RoundedProduct.apply(query[:, :d], positives[:, :d], dot)
        lse = torch.logsumexp(scores * iq[:, j, None] * ip[None, :, j] / temperature, dim=1)
        losses.append((lse - target[:, j]).mean())
    return torch.stack(losses)


def reference_in_batch_infonce(
    query: torch.Tensor, positives: torch.Tensor, dims: list[int], temperature: float, offset: int = 0,
) -> torch.Tensor:
    """The same loss in fp64 with normalised prefixes: what the rounding is measured against."""
    q, p = query.double(), positives.double()
    target = torch.arange(offset, offset + q.shape[0])
    return torch.stack([
        F.cross_entropy(F.normalize(q[:, :d], dim=-1) @ F.normalize(p[:, :d], dim=-1).T / temperature, target)
        for d in dims
    ])
