"""The training engine against independent references: naive loss gradients, padding sides,
gradient checkpointing, bf16, exact accumulation, and the recipe's per-size settings."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from f2llm.config import load_config
from f2llm.model.encoder import Encoder, autocast_dtype
from f2llm.kernels import distillation_mse, hard_negative_infonce, in_batch_infonce
from f2llm.train.losses import contrastive_loss
from f2llm.model.recipes import RECIPES, run_config_yaml
from f2llm.train.trainer import BatchObjective, backward, lr_lambda
from f2llm.config import StageConfig

from naive_losses import naive_hn, naive_ib, unit
from tolerance import assert_close_scaled

ROOT = Path(__file__).resolve().parents[1]


def _leaves(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]


def _grads(loss, inputs):
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


@pytest.mark.parametrize("b,k,d", [(1, 1, 5), (6, 7, 16), (3, 9, 33)])
def test_infonce_gradients_match_naive(b, k, d):
    q, p, n = _leaves((b, d), (b, d), (b, k, d), seed=b + k)
    for ours, ref in (
        (hard_negative_infonce(unit(q), unit(p), unit(n), 0.05), naive_hn(unit(q), unit(p), unit(n), 0.05)),
        (in_batch_infonce(unit(q), unit(p), 0.05), naive_ib(unit(q), unit(p), 0.05)),
    ):
        assert ours.item() == pytest.approx(ref.item(), rel=1e-9)
        for got, want in zip(_grads(ours, (q, p, n)), _grads(ref, (q, p, n))):
            torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-10)


def test_in_batch_with_offset_matches_naive_over_the_global_batch():
    q, p_all = _leaves((3, 8), (7, 8), seed=3)
    ours = in_batch_infonce(unit(q), unit(p_all), 0.05, offset=2)
    ref = naive_ib(unit(q), unit(p_all), 0.05, offset=2)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-9)
    for got, want in zip(_grads(ours, (q, p_all)), _grads(ref, (q, p_all))):
        torch.testing.assert_close(got, want)


def test_matryoshka_objective_gradients_match_naive():
    q, p, n = _leaves((4, 32), (4, 32), (4, 3, 32), seed=5)
    dims, weights = [32, 16, 8], [1.0, 1 / (2 * math.sqrt(2)), 1 / (3 * 2)]
    ours, _ = contrastive_loss(q, p, n, in_batch=True, dims=dims, weights=weights, temperature=0.05)
    ref = sum(
        w * (naive_hn(unit(q[:, :d]), unit(p[:, :d]), unit(n[..., :d]), 0.05) + naive_ib(unit(q[:, :d]), unit(p[:, :d]), 0.05))
        for d, w in zip(dims, weights)
    )
    assert ours.item() == pytest.approx(ref.item(), rel=1e-9)
    for got, want in zip(_grads(ours, (q, p, n)), _grads(ref, (q, p, n))):
        torch.testing.assert_close(got, want)


def test_distillation_gradient_matches_naive_sum():
    s, t = _leaves((3, 4), (3, 6), seed=9)
    ref = sum((s[i, j] - t[i, j]) ** 2 for i in range(3) for j in range(4)) / 12
    ours = distillation_mse(s, t)
    torch.testing.assert_close(_grads(ours, (s,))[0], _grads(ref, (s,))[0])


def test_schedule_warmup_cosine_and_floor():
    cfg = StageConfig(lr=1e-3, min_lr=1e-5, warmup_ratio=0.1)
    f = lr_lambda(cfg, 100)  # 10 warmup steps
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert f(100) == pytest.approx(0.01)  # the min_lr floor, not zero
    const = lr_lambda(StageConfig(lr=1e-3, schedule="constant", warmup_ratio=0.1), 100)
    assert const(50) == 1.0


# --- the encoder on the tiny Qwen3
TEXTS = ["Habari ya asubuhi", "ሰላም", "Hello there, how are you today?", "東京は日本の首都です。", "a"]


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_left_and_right_padding_give_the_same_states(tiny_model_dir, pooling):
    right = Encoder.load(tiny_model_dir, max_length=64, pooling=pooling, padding_side="right")
    left = Encoder.load(tiny_model_dir, max_length=64, pooling=pooling, padding_side="left")
    ids = right.tokenize(TEXTS)
    assert len({len(row) for row in ids}) > 1  # padding really happens
    alone = torch.cat([right(ids[i : i + 1]) for i in range(len(ids))])  # no padding at all
    with torch.no_grad():  # fp32 states of a 2-layer model: ~100 roundoffs of their size
        assert_close_scaled(right(ids), alone, rel=1e-5, msg="right padding")
        assert_close_scaled(left(ids), alone, rel=1e-5, msg="left padding")


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model_dir):
    grads = []
    for enabled in (False, True):
        enc = Encoder.load(tiny_model_dir, max_length=64).gradient_checkpointing(enabled)
        enc.model.train()
        enc(enc.tokenize(TEXTS)).pow(2).sum().backward()
        grads.append({n: p.grad for n, p in enc.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:  # the recomputed forward is the same computation
        assert_close_scaled(grads[1][name], grads[0][name], rel=1e-5, msg=name)


def test_bf16_autocast_where_supported(tiny_model_dir):
    assert autocast_dtype("auto", torch.device("cpu")) is None  # CPU: fp32 unless asked
    assert autocast_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    fp32 = Encoder.load(tiny_model_dir, max_length=64, precision="fp32")
    bf16 = Encoder.load(tiny_model_dir, max_length=64, precision="bf16")
    ids = fp32.tokenize(TEXTS)
    with torch.no_grad():
        a, b = fp32(ids), bf16(ids)
    assert b.dtype == torch.float32 and not torch.equal(a, b)  # really ran in bf16
    assert F.cosine_similarity(a, b).min() > 0.99


@pytest.mark.parametrize("in_batch,teacher", [(True, False), (False, False), (True, True)])
def test_accumulation_gives_the_one_pass_gradient(tiny_model_dir, in_batch, teacher):
    b, k = 3, 2
    texts = [f"{w} {i}" for i, w in enumerate(["query", "passage", "neg", "other"] * 3)][: b * (2 + k)]
    f64 = {"max_length": 64, "dtype": torch.float64}  # exact enough to compare tightly
    kd = Encoder.load(tiny_model_dir, **f64).requires_grad_(False).eval() if teacher else None
    grads = []
    for micro in (1, 4):
        enc = Encoder.load(tiny_model_dir, **f64)
        objective = BatchObjective(in_batch, [64, 32], [1.0, 0.35], 0.05, b, k, 0, b, kd, 1.0)
        loss, parts = backward(enc, enc.tokenize(texts), objective, micro)
        grads.append((loss, {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}))
    (loss1, g1), (loss4, g4) = grads
    assert loss4.item() == pytest.approx(loss1.item(), rel=1e-10)
    assert g1.keys() == g4.keys() and len(g1) > 0
    for name in g1:  # fp64: 1e-9 of each gradient's size is ~10^6 roundoffs, and far below any real error
        assert_close_scaled(g4[name], g1[name], rel=1e-9, msg=name)


# --- the eight sizes
EXPECTED = {  # the recipe's table: lr, epochs, teacher, pruned from
    "80M": (4e-5, 4, "0.6B", "0.6B"), "160M": (3e-5, 3, "0.6B", "0.6B"), "330M": (2e-5, 3, "0.6B", "0.6B"),
    "0.6B": (1e-5, 2, "1.7B", None), "1.7B": (9e-6, 2, "4B", None), "4B": (7e-6, 2, None, None),
    "8B": (6e-6, 2, None, None), "14B": (5e-6, 2, None, None),
}


def _config_path(size: str) -> Path:
    return ROOT / "configs" / "recipes" / (size.lower().replace(".", "-") + ".yaml")


@pytest.mark.parametrize("size", [*EXPECTED, "family"])
def test_ready_made_configs_are_current(size):
    assert _config_path(size).read_text() == run_config_yaml(size), f"{_config_path(size)} is stale: run `make recipes`"


@pytest.mark.parametrize("size", list(EXPECTED))
def test_ready_made_config_per_size(size):
    cfg = load_config(_config_path(size))
    lr, epochs, teacher, pruned_from = EXPECTED[size]
    r = RECIPES[size]
    if pruned_from:  # a family run: the 0.6B's stages, then this size pruned from its stage 1, taught by it
        assert cfg.model.base.endswith(f"Qwen3-{pruned_from}") and cfg.train.stage1 is not None
        [student] = cfg.family.students
        assert (student.hidden, student.mlp, student.layers) == (r.hidden, r.mlp, r.layers)
        assert (student.stage2.lr, student.stage2.epochs, student.stage2.batch_size) == (lr, epochs, 512)
        assert student.kd_weight == 1.0 and teacher == pruned_from
        assert student.stage2.warmup_steps == 500
        return
    assert cfg.family is None and cfg.model.base.endswith(f"Qwen3-{size}")
    assert (cfg.train.stage2.lr, cfg.train.stage2.epochs, cfg.train.stage2.batch_size) == (lr, epochs, 512)
    assert cfg.train.stage1 is not None
    if teacher is None:
        assert cfg.train.teacher is None
    else:
        assert cfg.train.teacher.endswith(f"f2llm-v2-{teacher.lower().replace('.', '-')}/model")
    assert cfg.model.max_length == 1024 and cfg.train.temperature == 0.05
    assert set(EXPECTED) == set(RECIPES)


def test_the_family_config_has_the_three_pruned_sizes():
    cfg = load_config(_config_path("family"))
    assert [(s.hidden, s.mlp, s.layers) for s in cfg.family.students] == [(320, 2048, 8), (640, 1536, 9), (896, 2560, 16)]
    assert cfg.model.base.endswith("Qwen3-0.6B") and cfg.train.stage2.lr == 1e-5
