"""Matryoshka dimensions and loss weights of the F2LLM-v2 recipe.

Dims are the powers of two from 8 below the hidden size, plus the full size. The n-th dim
counted from the largest (n = 1 for the full size) is weighted

    w_n = 1 / (n * sqrt(d_full / d_n))        (unnormalised)

so for a 1024-wide model: 1024 -> 1.0, 512 -> 0.354, 256 -> 0.167, ... Each prefix is
re-normalised after slicing before it enters a loss.
"""

from __future__ import annotations

import math


def matryoshka_dims(hidden_size: int) -> list[int]:
    dims = []
    d = 8
    while d < hidden_size:
        dims.append(d)
        d *= 2
    return sorted(dims + [hidden_size], reverse=True)


def matryoshka_weights(dims: list[int]) -> list[float]:
    full = max(dims)
    ordered = sorted(dims, reverse=True)
    return [1.0 / ((n + 1) * math.sqrt(full / d)) for n, d in enumerate(ordered)]
