"""The F2LLM-v2 training objective over Matryoshka prefixes.

For pooled raw states q (queries), p (positives), n (hard negatives) and each Matryoshka dim d
with weight w_d (see `matryoshka.py`), prefixes are sliced and re-normalised, then

    L = sum_d w_d * ( L_hn(q_d, p_d, n_d) + [retrieval-like task] * L_ib(q_d, p_d) )

with both InfoNCE terms from `f2llm.kernels` at temperature tau (recipe: 0.05): the
hard-negative term per dim ([B, 1 + k] scores), the in-batch term for every dim in one tiled
pass over the global batch's positives. Clustering and classification use only the
hard-negative term, which avoids in-batch false negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from f2llm.kernels import hard_negative_infonce, in_batch_matryoshka_infonce


def contrastive_loss(
    query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, *, in_batch: bool,
    dims: list[int], weights: list[float], temperature: float,
    all_positives: torch.Tensor | None = None, offset: int = 0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """query/positive [B, H], negatives [B, k, H] (raw states) -> (loss, per-term values).

    Data parallel: `all_positives` are the global batch's positives (gathered with gradients)
    and this rank's queries own rows offset..offset+B of them.
    """
    hn = sum(
        weight * hard_negative_infonce(
            F.normalize(query[:, :dim], dim=-1), F.normalize(positive[:, :dim], dim=-1),
            F.normalize(negatives[..., :dim], dim=-1), temperature,
        )
        for dim, weight in zip(dims, weights)
    )
    parts = {"hard_negative": hn.item(), "in_batch": 0.0}
    if not in_batch:
        return hn, parts
    all_positives = positive if all_positives is None else all_positives
    per_dim = in_batch_matryoshka_infonce(query, all_positives, dims, temperature, offset)
    ib = (per_dim * torch.tensor(weights, dtype=per_dim.dtype, device=per_dim.device)).sum()
    parts["in_batch"] = ib.item()
    return hn + ib, parts
