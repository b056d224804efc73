import pytest
import torch
from transformers import Qwen3Model

from f2llm.model.matryoshka import matryoshka_dims
from f2llm.model.recipes import RECIPES, qwen3_config

# Parameter counts the recipe states for these shapes (embedding model, no LM head).
STATED = {"80M": 80_084_288, "160M": 159_185_024, "330M": 334_349_184, "0.6B": 596_049_920}


@pytest.mark.parametrize("size", sorted(STATED))
def test_shapes_give_the_recipe_parameter_counts(size):
    with torch.device("meta"):
        model = Qwen3Model(qwen3_config(size))
    assert sum(p.numel() for p in model.parameters()) == STATED[size]


def test_family_facts():
    assert list(RECIPES) == ["80M", "160M", "330M", "0.6B", "1.7B", "4B", "8B", "14B"]
    assert all(RECIPES[s].pruned_from == "0.6B" and RECIPES[s].teacher == "0.6B" for s in ("80M", "160M", "330M"))
    assert [RECIPES[s].teacher for s in ("4B", "8B", "14B")] == [None] * 3
    assert matryoshka_dims(RECIPES["330M"].hidden)[:2] == [896, 512]
