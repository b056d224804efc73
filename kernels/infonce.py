"""The two InfoNCE terms of F2LLM-v2 (torch reference), temperature tau (recipe: 0.05).

Inputs are L2-normalised, so dot products are cosine similarities.

Hard-negative InfoNCE, for every source: for query q_i, positive p_i, negatives n_i1..n_ik,

    L_hn = -1/B * sum_i log( exp(q_i.p_i / tau) / (exp(q_i.p_i / tau) + sum_j exp(q_i.n_ij / tau)) )

In-batch InfoNCE, retrieval sources only: every query against the positives of the whole
(global) batch, its own positive as the target,

    L_ib = -1/B * sum_i log( exp(q_i.p_i / tau) / sum_m exp(q_i.p_m / tau) )
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hard_negative_infonce(
    query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> torch.Tensor:
    """query [B, D], positive [B, D], negatives [B, k, D] -> scalar mean loss."""
    pos = (query * positive).sum(-1, keepdim=True)  # [B, 1]
    neg = torch.einsum("bd,bkd->bk", query, negatives)  # [B, k]
    logits = torch.cat([pos, neg], dim=1) / temperature
    target = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(_at_least_fp32(logits), target)


def in_batch_infonce(
    query: torch.Tensor, positives: torch.Tensor, temperature: float, offset: int = 0
) -> torch.Tensor:
    """query [B, D] against all positives [M, D]; query i's own positive is row offset + i."""
    logits = query @ positives.T / temperature
    target = torch.arange(query.shape[0], device=query.device) + offset
    return F.cross_entropy(_at_least_fp32(logits), target)


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 logits are upcast for the log-sum-exp; fp64 stays fp64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))
