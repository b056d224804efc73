import math
from collections import Counter

import pytest

from f2llm.evaluation.metrics import ndcg_at_k, recall_at_k
from f2llm.train.sampler import SourceBatchSampler


def test_ndcg_and_recall_hand_values():
    assert ndcg_at_k([7, 1, 2], {7}, 10) == 1.0
    assert ndcg_at_k([1, 7, 2], {7}, 10) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k([1, 2, 7], {7}, 2) == 0.0
    # two relevant at ranks 1 and 3: (1 + 1/2) / (1 + 1/log2(3))
    assert ndcg_at_k([4, 0, 5], {4, 5}, 10) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert recall_at_k([4, 0, 5], {4, 5, 9}, 2) == pytest.approx(1 / 3)


def test_every_row_once_per_epoch_and_one_source_per_batch():
    sources = {"a": list(range(0, 33)), "b": list(range(33, 40)), "c": [40]}
    sampler = SourceBatchSampler(sources, batch_size=8, seed=3)
    batches = sampler.epoch(0)
    assert sorted(r for b in batches for r in b.rows) == list(range(41))
    for batch in batches:
        assert set(batch.rows) <= set(sources[batch.source])
    assert sampler.epoch(0) == SourceBatchSampler(sources, 8, seed=3).epoch(0)  # same seed, same order
    assert sampler.epoch(1) != sampler.epoch(0)


def test_sources_drawn_in_proportion_to_their_batches():
    sampler = SourceBatchSampler({"big": list(range(300)), "small": list(range(300, 400))}, batch_size=10, seed=0)
    firsts = Counter(sampler.epoch(e)[0].source for e in range(2000))
    assert firsts["big"] / 2000 == pytest.approx(0.75, abs=0.03)  # 30 batches vs 10
