"""The torch reference ops and the loss composition against naive, independent computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from f2llm.kernels import hard_negative_infonce, in_batch_infonce, last_token_pool, mean_pool
from f2llm.train.losses import contrastive_loss
from f2llm.model.matryoshka import matryoshka_dims, matryoshka_weights

from naive_losses import naive_hn, naive_ib


def test_last_token_pool_right_and_left_padding():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert torch.equal(last_token_pool(hidden, right), torch.stack([hidden[0, 1], hidden[1, 3]]))
    assert torch.equal(last_token_pool(hidden, left), torch.stack([hidden[0, 3], hidden[1, 3]]))
    one = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 1]])  # all padding but one token
    assert torch.equal(last_token_pool(hidden, one), torch.stack([hidden[0, 0], hidden[1, 3]]))


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert torch.equal(mean_pool(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))


@pytest.mark.parametrize("b,k,d", [(1, 1, 3), (5, 7, 16), (4, 9, 33)])
def test_infonce_terms_match_naive(b, k, d):
    g = torch.Generator().manual_seed(b * 100 + k)
    q, p = (F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=-1) for _ in range(2))
    n = F.normalize(torch.randn(b, k, d, generator=g, dtype=torch.float64), dim=-1)
    assert hard_negative_infonce(q, p, n, 0.05).item() == pytest.approx(naive_hn(q, p, n, 0.05).item(), rel=1e-6)
    assert in_batch_infonce(q, p, 0.05).item() == pytest.approx(naive_ib(q, p, 0.05).item(), rel=1e-6)


def test_matryoshka_dims_and_recipe_weights():
    assert matryoshka_dims(1024) == [1024, 512, 256, 128, 64, 32, 16, 8]
    assert matryoshka_dims(896) == [896, 512, 256, 128, 64, 32, 16, 8]
    w = matryoshka_weights(matryoshka_dims(1024))
    assert [round(x, 3) for x in w[:3]] == [1.0, 0.354, 0.167]  # the recipe's 0.6B example
    assert w[1] == pytest.approx(1 / (2 * math.sqrt(2)))


def test_contrastive_loss_is_weighted_sum_over_renormalised_prefixes():
    g = torch.Generator().manual_seed(0)
    q, p = torch.randn(4, 32, generator=g, requires_grad=True), torch.randn(4, 32, generator=g)
    n = torch.randn(4, 3, 32, generator=g)
    dims, weights = [32, 16, 8], [1.0, 0.5, 0.25]
    loss, parts = contrastive_loss(q, p, n, in_batch=True, dims=dims, weights=weights, temperature=0.05)
    expected = 0.0
    for d, w in zip(dims, weights):
        qd, pd, nd = (F.normalize(x[..., :d].detach().double(), dim=-1) for x in (q, p, n))
        expected += w * (naive_hn(qd, pd, nd, 0.05) + naive_ib(qd, pd, 0.05)).item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert parts["hard_negative"] + parts["in_batch"] == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    hn_only, parts = contrastive_loss(q, p, n, in_batch=False, dims=dims, weights=weights, temperature=0.05)
    assert parts["in_batch"] == 0.0 and hn_only.item() < loss.item()
