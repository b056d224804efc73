"""The F2LLM-v2 training objective over Matryoshka prefixes.

For pooled raw states q (queries), p (positives), n (hard negatives) and each Matryoshka dim d
with weight w_d (see `matryoshka.py`), prefixes are sliced and re-normalised, then

    L = sum_d w_d * ( L_hn(q_d, p_d, n_d) + [retrieval-like task] * L_ib(q_d, p_d) )

with both InfoNCE terms from `f2llm.kernels` at temperature tau (recipe: 0.05). Clustering and
classification use only the hard-negative term, which avoids in-batch false negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from f2llm.kernels import hard_negative_infonce, in_batch_infonce


def contrastive_loss(
    query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, *, in_batch: bool,
    dims: list[int], weights: list[float], temperature: float,
    all_positives: torch.Tensor | None = None, offset: int = 0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """query/positive [B, H], negatives [B, k, H] (raw states) -> (loss, per-term values).

    Data parallel: `all_positives` are the global batch's positives (gathered with gradients)
    and this rank's queries own rows offset..offset+B of them.
    """
    all_positives = positive if all_positives is None else all_positives
    total = query.new_zeros((), dtype=torch.float32)
    parts = {"hard_negative": 0.0, "in_batch": 0.0}
    for dim, weight in zip(dims, weights):
        q = F.normalize(query[:, :dim], dim=-1)
        p = F.normalize(positive[:, :dim], dim=-1)
        n = F.normalize(negatives[..., :dim], dim=-1)
        hn = hard_negative_infonce(q, p, n, temperature)
        total = total + weight * hn
        parts["hard_negative"] += weight * hn.item()
        if in_batch:
            ib = in_batch_infonce(q, F.normalize(all_positives[:, :dim], dim=-1), temperature, offset)
            total = total + weight * ib
            parts["in_batch"] += weight * ib.item()
    return total, parts
