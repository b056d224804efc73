"""Prune a Qwen3 embedding model to a smaller Qwen3 (recipe, "Model family" and "Training").

F2LLM-v2 makes its 80M/160M/330M models from the stage-1 0.6B model: width by activation norms on
a small calibration set (rows/columns of the hidden and MLP axes), depth by keeping the first n
layers (pruning by activation change did worse); attention heads are kept (16/8/128).

Importance, from forward passes only (hooks, no gradients), as streaming fp64 sums, so memory is
O(layers x (hidden + mlp)) whatever the number of calibration tokens:

    hidden channel c        I(c)    = sqrt( sum_t sum_n RMSNorm_n(x_t)_c^2 )
                            over every real token t and every hidden-axis norm n a kept layer
                            reads (its two RMSNorms) plus the final norm: what the blocks see
    MLP channel j, layer l  I_l(j)  = sqrt( sum_t (silu(W_gate x_t) * W_up x_t)_j^2 )  (down_proj's input)
    block importance        BI_l    = mean_t (1 - cos(h_t before layer l, h_t after it))
                            (ShortGPT, arXiv 2403.03853); `depth="block"` keeps the n layers of
                            largest BI in their order, `depth="first"` the first n (recipe)

Surgery slices every weight that touches a pruned axis: the embedding's columns, q/k/v's input
columns, o_proj's output rows, gate/up rows and down columns, every hidden-axis RMSNorm; per-layer
config lists (`layer_types`, `max_window_layers`) are cut to the kept layers. RMSNorm divides by
the channel count, x / sqrt(sum(x^2) / H + eps) * w, so removing channels that carry nothing
would still change its output. Every write into the residual stream (the embedding, o_proj's and
down_proj's output rows) is scaled by a = sqrt(H' / H) and every hidden-axis norm weight by 1 / a:

    RMSNorm'(a x) = a x (w / a) / sqrt(a^2 sum(x^2) / H' + eps) = x w / sqrt(sum(x^2) / H + eps)

exactly, eps included, and the residual stream (only ever read through a norm) is a x. So pruning
channels whose weights are all zero changes no embedding, and for real pruning the norms see the
statistics they were trained with. The pruned checkpoint is written as safetensors + config +
tokenizer straight from the sliced state dict: the source model is the only full-size copy held.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from f2llm import storage
from f2llm.model.recipes import RECIPES
from f2llm.model.tokenizer import encode_with_eos
from f2llm.tasks import query_prompt

Depth = Literal["first", "block"]


@dataclass(frozen=True)
class PruneTarget:
    """The shape to prune to; heads, kv heads and head_dim stay as they are."""

    hidden: int
    mlp: int
    layers: int

    @classmethod
    def of(cls, size: str) -> "PruneTarget":
        r = RECIPES[size]
        return cls(r.hidden, r.mlp, r.layers)


@dataclass
class Importance:
    hidden_sq: torch.Tensor  # [2 * layers + 1, hidden]: sum of squares of each norm's output
    mlp_sq: torch.Tensor  # [layers, mlp]: sum of squares of down_proj's input
    block: torch.Tensor  # [layers]: sum over tokens of 1 - cos(layer input, layer output)
    tokens: int

    def hidden(self, layers: list[int]) -> torch.Tensor:
        rows = [2 * i for i in layers] + [2 * i + 1 for i in layers] + [self.hidden_sq.shape[0] - 1]
        return self.hidden_sq[rows].sum(0).sqrt()


@dataclass(frozen=True)
class PrunePlan:
    layers: list[int]  # kept layers, ascending
    hidden: list[int]  # kept hidden channels, in the student's order (`prefix_aligned`)
    mlp: list[list[int]]  # kept MLP channels of each kept layer, ascending


def calibration_texts(rows: pd.DataFrame, n_rows: int = 1024, seed: int = 0) -> list[str]:
    """`n_rows` training rows mixed over sources (hence languages): sources in turn, rows shuffled
    within each; each row gives its query with its instruction (as in stage 2) and its passage."""
    rng = random.Random(seed)
    train = rows[rows["split"] == "train"] if "split" in rows else rows
    queues = []  # per source, up to n_rows random row positions: O(sources x n_rows), not O(rows)
    for _, positions in sorted(train.groupby("source").indices.items()):
        queues.append([int(positions[i]) for i in rng.sample(range(len(positions)), min(len(positions), n_rows))])
    rng.shuffle(queues)
    picked: list[int] = []
    while len(picked) < n_rows and any(queues):
        for queue in queues:
            if queue and len(picked) < n_rows:
                picked.append(queue.pop())
    chosen = train.iloc[picked]
    return [text for q, i, p in zip(chosen["query"], chosen["instruction"], chosen["passage"])
            for text in (query_prompt(i) + q, p)]


def _decoder_layers(model) -> torch.nn.ModuleList:
    return model.layers


@torch.inference_mode()
def measure_importance(
    model, tokenizer, texts: list[str], batch_size: int = 8, max_length: int = 512, progress: bool = True,
) -> Importance:
    """One forward pass over `texts` with hooks accumulating the module docstring's sums."""
    layers = _decoder_layers(model)
    n, hidden = len(layers), model.config.hidden_size
    hidden_sq = torch.zeros(2 * n + 1, hidden, dtype=torch.float64)
    mlp_sq = torch.zeros(n, model.config.intermediate_size, dtype=torch.float64)
    block = torch.zeros(n, dtype=torch.float64)
    state: dict[str, torch.Tensor] = {}

    def sum_sq(x: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [D], real tokens only
        return (x.double().square() * state["mask"]).sum(dim=(0, 1)).cpu()

    # hooks return None: a value returned would replace the module's input or output
    def on_norm(row: int):
        def hook(module, args, out) -> None:
            hidden_sq[row] += sum_sq(out)
        return hook

    def on_down(i: int):
        def hook(module, args) -> None:
            mlp_sq[i] += sum_sq(args[0])
        return hook

    def before_layer(module, args, kwargs):
        state["before"] = args[0] if args else kwargs["hidden_states"]

    def after_layer(i: int):
        def hook(module, args, kwargs, out):
            after = out[0] if isinstance(out, tuple) else out
            cos = F.cosine_similarity(state["before"].double(), after.double(), dim=-1)  # [B, L]
            block[i] += float(((1 - cos) * state["mask"][..., 0]).sum())
        return hook

    handles = [model.norm.register_forward_hook(on_norm(2 * n))]
    for i, layer in enumerate(layers):
        handles += [
            layer.input_layernorm.register_forward_hook(on_norm(2 * i)),
            layer.post_attention_layernorm.register_forward_hook(on_norm(2 * i + 1)),
            layer.mlp.down_proj.register_forward_pre_hook(on_down(i)),
            layer.register_forward_pre_hook(before_layer, with_kwargs=True),
            layer.register_forward_hook(after_layer(i), with_kwargs=True),
        ]
    model.eval()
    device = next(model.parameters()).device
    ids = encode_with_eos(tokenizer, texts, max_length)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: little padding
    tokens = 0
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="importance", disable=not progress):
            rows = [ids[i] for i in order[start : start + batch_size]]
            width = max(map(len, rows))
            input_ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
            state["mask"] = mask[..., None].double()
            model(input_ids=input_ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp_min(0))
            tokens += int(mask.sum())
    finally:
        for handle in handles:
            handle.remove()
    return Importance(hidden_sq, mlp_sq, block, tokens)


def prefix_aligned(kept: list[int]) -> list[int]:
    """Order kept hidden channels so that every kept channel c < H' sits at position c, the kept
    channels >= H' filling the gaps. Permuting the hidden axis is an exact symmetry of the model,
    and this order makes the student's channel i the teacher's channel i wherever it can: the
    distillation target (the teacher's prefix of the student's width) and the Matryoshka prefixes
    start aligned instead of mixing channels from across the teacher's width."""
    width = len(kept)
    low = {c for c in kept if c < width}
    high = iter(c for c in kept if c >= width)
    return [c if c in low else next(high) for c in range(width)]


def _top(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the k largest scores, ascending (stable: ties keep the lower index)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:k])


def plan_pruning(importance: Importance, target: PruneTarget, depth: Depth = "first") -> PrunePlan:
    n = importance.mlp_sq.shape[0]
    if not (0 < target.layers <= n and 0 < target.hidden <= importance.hidden_sq.shape[1]
            and 0 < target.mlp <= importance.mlp_sq.shape[1]):
        raise ValueError(f"cannot prune a {n}-layer, {importance.hidden_sq.shape[1]}-wide, "
                         f"{importance.mlp_sq.shape[1]}-MLP model to {target}")
    layers = list(range(target.layers)) if depth == "first" else _top(importance.block, target.layers)
    return PrunePlan(
        layers=layers,
        hidden=prefix_aligned(_top(importance.hidden(layers), target.hidden)),
        mlp=[_top(importance.mlp_sq[i].sqrt(), target.mlp) for i in layers],
    )


_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")
_HIDDEN_NORMS = ("input_layernorm.weight", "post_attention_layernorm.weight")


def prune_state_dict(state: dict[str, torch.Tensor], plan: PrunePlan, hidden_size: int) -> dict[str, torch.Tensor]:
    """Slice every tensor of a Qwen3Model state dict along the pruned axes (module docstring)."""
    h = torch.tensor(plan.hidden)
    a = math.sqrt(len(plan.hidden) / hidden_size)  # residual-stream scale (module docstring)
    new_index = {old: new for new, old in enumerate(plan.layers)}
    out = {}
    for name, tensor in state.items():
        if name == "embed_tokens.weight":
            out[name] = tensor[:, h] * a
        elif name == "norm.weight":
            out[name] = tensor[h] / a
        elif (m := _LAYER.match(name)) is not None:
            i, rest = int(m.group(1)), m.group(2)
            if i not in new_index:
                continue
            j = torch.tensor(plan.mlp[plan.layers.index(i)])
            key = f"layers.{new_index[i]}.{rest}"
            if rest in _HIDDEN_NORMS:
                out[key] = tensor[h] / a
            elif re.fullmatch(r"self_attn\.[qkv]_proj\.weight", rest):
                out[key] = tensor[:, h]
            elif re.fullmatch(r"self_attn\.[qkv]_proj\.bias|self_attn\.[qk]_norm\.weight", rest):
                out[key] = tensor  # per head: heads are kept
            elif rest in ("self_attn.o_proj.weight", "self_attn.o_proj.bias"):
                out[key] = tensor[h] * a
            elif rest in ("mlp.gate_proj.weight", "mlp.up_proj.weight"):
                out[key] = tensor[j][:, h]
            elif rest == "mlp.down_proj.weight":
                out[key] = tensor[h][:, j] * a
            else:
                raise ValueError(f"prune: no rule for {name} {tuple(tensor.shape)}")
        else:
            raise ValueError(f"prune: no rule for {name} {tuple(tensor.shape)}")
    return {name: t.contiguous() for name, t in out.items()}


def pruned_config(config, plan: PrunePlan):
    """A copy of a Qwen3Config with the kept widths and layers (per-layer lists cut to match)."""
    new = config.__class__.from_dict(config.to_dict())
    new.hidden_size = len(plan.hidden)
    new.intermediate_size = len(plan.mlp[0])
    new.num_hidden_layers = len(plan.layers)
    if getattr(config, "layer_types", None) is not None:
        new.layer_types = [config.layer_types[i] for i in plan.layers]
    if getattr(config, "max_window_layers", None) is not None:  # counts kept layers below the old bound
        new.max_window_layers = sum(i < config.max_window_layers for i in plan.layers)
    return new


def parameter_count(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() for t in state.values())


def prune_checkpoint(
    src: str | Path, out_dir: str | Path, targets: PruneTarget | dict[str, PruneTarget], texts: list[str],
    depth: Depth = "first", batch_size: int = 8, max_length: int = 512, trust_remote_code: bool = False,
) -> dict:
    """Prune the checkpoint at `src` (a path or store URI) to one target, or to several (a dict
    name -> target, written to out_dir/name) from one importance pass. Returns a report."""
    path = storage.local_dir(str(src))
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    # fp32: the residual scale a and 1/a are exact only there (a bf16 source is upcast once)
    model = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=torch.float32)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    importance = measure_importance(model, tokenizer, texts, batch_size, max_length)
    report = {
        "source": str(src), "depth": depth, "calibration_texts": len(texts), "calibration_tokens": importance.tokens,
        "importance_s": time.perf_counter() - started, "source_parameters": sum(p.numel() for p in model.parameters()),
        "block_importance": [round(float(b) / max(1, importance.tokens), 6) for b in importance.block], "pruned": {},
    }
    state = {name: t.cpu() for name, t in model.state_dict().items()}
    many = isinstance(targets, dict)
    for name, target in (targets if many else {"model": targets}).items():
        started = time.perf_counter()
        plan = plan_pruning(importance, target, depth)
        pruned = prune_state_dict(state, plan, model.config.hidden_size)
        out = Path(out_dir) / name if many else Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_file(pruned, out / "model.safetensors", metadata={"format": "pt"})
        config = pruned_config(model.config, plan)
        config.architectures = ["Qwen3Model"]
        config.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "pruning.json").write_text(json.dumps({"target": asdict(target), "depth": depth, "plan": asdict(plan)}))
        report["pruned"][name] = {
            **asdict(target), "parameters": parameter_count(pruned), "layers_kept": plan.layers,
            "surgery_s": time.perf_counter() - started,
        }
        del pruned
    return report
