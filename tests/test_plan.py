"""`f2llm plan`: parameter counts against the recipe and transformers' own Qwen3, state bytes by
hand, and the layouts that follow (issue 16)."""

import pytest
import torch
from transformers import Qwen3Model

from f2llm.cli import main
from f2llm.model.recipes import RECIPES, qwen3_config
from f2llm.model.plan import GB, activation_bytes, fit, layer_parameters, layout, parameters


def test_parameter_counts_match_the_recipe_and_transformers():
    stated = {"80M": 80_084_288, "160M": 159_185_024, "330M": 334_349_184, "0.6B": 596_049_920}
    for size, n in stated.items():
        assert parameters(RECIPES[size]) == n
    for size, r in RECIPES.items():
        with torch.device("meta"):
            model = Qwen3Model(qwen3_config(size))
        assert parameters(r) == sum(p.numel() for p in model.parameters()), size
        assert layer_parameters(r) == sum(p.numel() for p in model.layers[0].parameters()), size


def test_state_bytes_by_hand():
    r = RECIPES["0.6B"]
    p, layer, root = 596_049_920, layer_parameters(r), 151_936 * 1024 + 1024
    ddp = fit("0.6B", "DDP", 8, 80)
    assert ddp.state_gb * GB == pytest.approx(16 * p)  # fp32 weights + grads + two AdamW moments
    fsdp = fit("0.6B", "FSDP", 8, 80)
    assert fsdp.state_gb * GB == pytest.approx(16 * p / 8 + 2 * (root + 2 * layer) + 4 * layer)
    off = fit("0.6B", "FSDP + offload", 8, 80)
    assert off.host_gb * GB == pytest.approx(16 * p / 8) and off.state_gb < fsdp.state_gb


def test_activation_bytes_by_hand():
    r = RECIPES["80M"]  # h 320, m 2048, 8 layers, 16/8 heads of 128
    width = 2 * 320 + (16 + 16) * 128 + 16 * 128 + 320 + 3 * 2048
    assert activation_bytes(r, 3, 100) == 2 * 8 * 300 * 320 + 4 * 300 * width


def test_layouts_follow_memory():
    eight_b_ddp = fit("8B", "DDP", 8, 80)
    assert not eight_b_ddp.fits and eight_b_ddp.state_gb > 80  # ~121 GB of state a replica
    assert fit("8B", "FSDP", 8, 80).fits
    assert layout("8B", 80) == ("FSDP", 8, 1) and layout("80M", 80) == ("DDP", 8, 1)
    assert layout("14B", 24) is not None and layout("14B", 24)[2] >= 1
    # more micro-batches when activations must shrink: a quarter of the GPUs, a smaller budget
    assert fit("1.7B", "FSDP", 2, 80).micro_batches > fit("1.7B", "FSDP", 8, 80).micro_batches
    assert not fit("14B", "FSDP", 1, 80).fits


def test_cli_plan(capsys):
    assert main(["plan", "8B", "--gpus", "8", "--gpu-memory", "80"]) == 0
    out = capsys.readouterr().out
    assert "recipe layout: FSDP on 8 GPUs (1 node)" in out
    assert main(["plan", "all", "--gpu-memory", "80"]) == 0
    assert "14B" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["plan", "9B"])
