"""Multi-source batching of the F2LLM-v2 recipe.

Every global batch comes from one source. A source is drawn with probability proportional to
its number of (remaining) batches, and an epoch ends when every source is exhausted. Drawing
proportionally to the remaining count without replacement is exactly a uniform shuffle of all
the batches of the epoch, which is how it is done here: same seed -> same order on every rank.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Batch:
    source: str
    rows: tuple[int, ...]  # row positions in the stage table


class SourceBatchSampler:
    def __init__(self, sources: dict[str, list[int]], batch_size: int, seed: int = 0):
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.sources = {name: list(rows) for name, rows in sorted(sources.items()) if rows}
        self.batch_size = batch_size
        self.seed = seed

    def epoch(self, epoch: int) -> list[Batch]:
        rng = random.Random(f"{self.seed}-{epoch}")
        batches = []
        for name, rows in self.sources.items():
            rows = rows[:]
            rng.shuffle(rows)
            for start in range(0, len(rows), self.batch_size):
                batches.append(Batch(name, tuple(rows[start : start + self.batch_size])))
        rng.shuffle(batches)
        return batches

    def __len__(self) -> int:
        return len(self.epoch(0))
