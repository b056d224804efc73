"""The F2LLM-v2 training objective over Matryoshka prefixes.

For pooled raw states q (queries), p (positives), n (hard negatives) and each Matryoshka dim d
with weight w_d (see `matryoshka.py`), prefixes are sliced and re-normalised, then

    L = sum_d w_d * ( L_hn(q_d, p_d, n_d) + [retrieval-like task] * L_ib(q_d, p_d) )

with both InfoNCE terms from `f2llm.kernels` at temperature tau (recipe: 0.05): the
hard-negative term per dim ([B, 1 + k] scores), the in-batch term for every dim in one tiled
pass over the global batch's positives. Clustering and classification use only the
hard-negative term, which avoids in-batch false negatives.

In-batch false negatives of retrieval sources: a positive text that appears twice in a global
batch would be, for each of its queries, both the target and a negative. Given the positives'
text ids, each distinct text is one column (its first occurrence) and every query targets its
text's column: the in-batch loss with the duplicate columns removed. The published code does not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from f2llm.kernels import hard_negative_infonce, in_batch_matryoshka_infonce


def distinct_columns(positive_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """Text ids of a batch's positives -> (columns kept: each text's first occurrence, and for
    every row the index among them of its own text's column)."""
    first: dict[int, int] = {}
    keep, target = [], []
    for column, text in enumerate(positive_ids):
        if text not in first:
            first[text] = len(keep)
            keep.append(column)
        target.append(first[text])
    return keep, target


def contrastive_loss(
    query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, *, in_batch: bool,
    dims: list[int], weights: list[float], temperature: float,
    all_positives: torch.Tensor | None = None, offset: int = 0, positive_ids: Sequence[int] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """query/positive [B, H], negatives [B, k, H] (raw states) -> (loss, per-term values).

    Data parallel: `all_positives` are the global batch's positives (gathered with gradients)
    and this rank's queries own rows offset..offset+B of them. `positive_ids`, the text ids of
    the global batch's positives, masks duplicated positives' columns.
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
    targets = None
    if positive_ids is not None:
        keep, target = distinct_columns(positive_ids)
        if len(keep) < len(positive_ids):
            all_positives = all_positives[keep]
            targets = torch.tensor(target[offset : offset + query.shape[0]], device=query.device)
    per_dim = in_batch_matryoshka_infonce(query, all_positives, dims, temperature, offset, targets=targets)
    ib = (per_dim * torch.tensor(weights, dtype=per_dim.dtype, device=per_dim.device)).sum()
    parts["in_batch"] = ib.item()
    return hn + ib, parts
