"""The pruner: exact where it must be, the recipe's shapes and parameter counts, loadable output."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoTokenizer, Qwen3Config, Qwen3Model

from f2llm.model.encoder import Encoder
from f2llm.model.prune import (
    PruneTarget, calibration_texts, measure_importance, plan_pruning, prefix_aligned, prune_checkpoint,
)
from f2llm.model.recipes import RECIPES

TEXTS = ["Habari ya asubuhi", "ሰላም ለዓለም", "Hello there, how are you today?", "東京は日本の首都です。",
         "Mji mkuu wa Kenya ni Nairobi.", "Кто учит детей в школе?"]


def _embed(model_dir, texts=TEXTS) -> torch.Tensor:
    return Encoder.load(model_dir, max_length=64).encode(texts)


def test_calibration_mixes_sources_with_stage2_instructions(sample_rows):
    texts = calibration_texts(sample_rows, n_rows=64, seed=0)
    assert len(texts) == 128  # a query (instructed) and a passage per row
    queries = texts[0::2]
    assert all(q.startswith("Instruct: ") for q in queries)
    picked = sample_rows[sample_rows["passage"].isin(texts[1::2])]
    assert picked["source"].nunique() >= 50 and picked["language"].nunique() >= 20  # mixed, not one source


def test_pruning_nothing_gives_the_same_embeddings(tmp_path, tiny_model_dir):
    config = AutoConfig.from_pretrained(tiny_model_dir)
    same = PruneTarget(config.hidden_size, config.intermediate_size, config.num_hidden_layers)
    report = prune_checkpoint(tiny_model_dir, tmp_path / "same", same, TEXTS, max_length=64)
    assert report["pruned"]["model"]["parameters"] == report["source_parameters"]
    assert (_embed(tmp_path / "same") - _embed(tiny_model_dir)).abs().max() <= 1e-6


def _zero_channels(model_dir, out_dir, hidden: list[int], mlp: dict[int, list[int]]) -> None:
    """A copy of the model in which the given hidden channels and MLP channels carry nothing."""
    state = load_file(model_dir / "model.safetensors")
    for name, t in state.items():
        if name == "embed_tokens.weight":
            t[:, hidden] = 0
        elif name.endswith(("o_proj.weight", "down_proj.weight")):
            t[hidden] = 0  # nothing written into the pruned residual channels
    for layer, channels in mlp.items():
        for part in ("gate_proj", "up_proj"):
            state[f"layers.{layer}.mlp.{part}.weight"][channels] = 0
        state[f"layers.{layer}.mlp.down_proj.weight"][:, channels] = 0
    out_dir.mkdir()
    save_file(state, out_dir / "model.safetensors", metadata={"format": "pt"})
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (out_dir / name).write_bytes((model_dir / name).read_bytes())


def test_pruning_all_zero_channels_gives_the_same_embeddings(tmp_path, tiny_model_dir):
    config = AutoConfig.from_pretrained(tiny_model_dir)
    hidden = [3, 17, 40, 63]
    mlp = {0: [0, 5, 77, 127, 9, 64, 100, 101], 1: [1, 2, 3, 4, 50, 60, 70, 80]}
    _zero_channels(tiny_model_dir, tmp_path / "zeroed", hidden, mlp)
    target = PruneTarget(config.hidden_size - len(hidden), config.intermediate_size - 8, config.num_hidden_layers)
    prune_checkpoint(tmp_path / "zeroed", tmp_path / "pruned", target, TEXTS, max_length=64)
    plan = json.loads((tmp_path / "pruned" / "pruning.json").read_text())["plan"]
    assert set(plan["hidden"]) == set(range(config.hidden_size)) - set(hidden)  # the importance found them
    assert [set(range(config.intermediate_size)) - set(kept) for kept in plan["mlp"]] == [set(mlp[0]), set(mlp[1])]
    keep = plan["hidden"]
    before = _embed(tmp_path / "zeroed")
    assert before[:, hidden].abs().max() == 0
    assert (_embed(tmp_path / "pruned") - before[:, keep]).abs().max() <= 1e-6


def test_block_importance_drops_the_layer_that_changes_nothing(tmp_path, tiny_model_dir):
    model = AutoModel.from_pretrained(tiny_model_dir)
    with torch.no_grad():  # layer 0 becomes the identity: its attention and MLP write nothing
        model.layers[0].self_attn.o_proj.weight.zero_()
        model.layers[0].mlp.down_proj.weight.zero_()
    model.save_pretrained(tmp_path / "identity0")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "identity0")
    importance = measure_importance(model, AutoTokenizer.from_pretrained(tiny_model_dir), TEXTS, progress=False)
    assert importance.block[0] < 1e-9 < importance.block[1]
    one_layer = PruneTarget(64, 128, 1)
    assert plan_pruning(importance, one_layer, depth="first").layers == [0]
    assert plan_pruning(importance, one_layer, depth="block").layers == [1]
    with pytest.raises(ValueError, match="cannot prune"):
        plan_pruning(importance, PruneTarget(65, 128, 1))
    # dropping the identity layer (layer 1 renumbered to 0, its layer type kept) changes nothing
    prune_checkpoint(tmp_path / "identity0", tmp_path / "block", one_layer, TEXTS, depth="block", max_length=64)
    config = AutoConfig.from_pretrained(tmp_path / "block")
    assert config.num_hidden_layers == 1 and len(config.layer_types) == 1
    assert (_embed(tmp_path / "block") - _embed(tmp_path / "identity0")).abs().max() <= 1e-6


def test_kept_channels_keep_the_teachers_prefix_positions():
    assert prefix_aligned([1, 2, 5, 7]) == [5, 1, 2, 7]  # 1 and 2 stay in place, 5 and 7 fill 0 and 3
    assert prefix_aligned([0, 1, 2]) == [0, 1, 2]
    assert prefix_aligned([4, 5, 6]) == [4, 5, 6]


@pytest.fixture(scope="module")
def qwen3_06b_dir(tmp_path_factory, tiny_model_dir):
    """A 0.6B-shaped Qwen3 with random weights (2.4 GB in fp32) and the tiny tokenizer."""
    r = RECIPES["0.6B"]
    config = Qwen3Config(
        vocab_size=151_936, hidden_size=r.hidden, intermediate_size=r.mlp, num_hidden_layers=r.layers,
        num_attention_heads=r.heads, num_key_value_heads=r.kv_heads, head_dim=r.head_dim,
        max_window_layers=r.layers, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("qwen3-0.6b")
    Qwen3Model(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.mark.slow
def test_the_recipes_three_sizes_from_a_06b_model(tmp_path, qwen3_06b_dir):
    expected = {"80M": 80_084_288, "160M": 159_185_024, "330M": 334_349_184}
    targets = {size: PruneTarget.of(size) for size in expected}
    report = prune_checkpoint(qwen3_06b_dir, tmp_path, targets, TEXTS, max_length=32)
    assert report["source_parameters"] == 596_049_920
    for size, count in expected.items():
        assert report["pruned"][size]["parameters"] == count
        config = AutoConfig.from_pretrained(tmp_path / size)
        r = RECIPES[size]
        assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (r.hidden, r.mlp, r.layers)
        assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (16, 8, 128)
        assert len(config.layer_types) == r.layers and config.max_window_layers == r.layers
        model = AutoModel.from_pretrained(tmp_path / size)
        assert sum(p.numel() for p in model.parameters()) == count
        vectors = Encoder(model, AutoTokenizer.from_pretrained(tmp_path / size), max_length=32).encode(TEXTS[:2])
        assert vectors.shape == (2, r.hidden) and torch.isfinite(vectors).all()
