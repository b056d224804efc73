"""Retrieval metrics with binary relevance (one or more relevant documents per query).

    DCG@k  = sum_{r=1..k} rel_r / log2(r + 1)
    nDCG@k = DCG@k / IDCG@k, IDCG@k the DCG of the ideal ranking (all relevant first)
    recall@k = |relevant in top k| / |relevant|
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def ndcg_at_k(ranking: Sequence[int], relevant: set[int], k: int) -> float:
    dcg = sum(1.0 / math.log2(rank + 2) for rank, doc in enumerate(ranking[:k]) if doc in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall_at_k(ranking: Sequence[int], relevant: set[int], k: int) -> float:
    return len(set(ranking[:k]) & relevant) / len(relevant) if relevant else 0.0
