"""Text -> embedding with any Hugging Face decoder (Qwen3 family) or encoder checkpoint.

One path serves training, evaluation, export checks and serving: tokenise with the EOS rule,
pad (right or left), run the backbone, pool the last token (or mean), and for inference
L2-normalise and optionally truncate to a Matryoshka prefix (re-normalised after slicing).

Left padding shifts every real token right, so position ids are taken from the mask
(position = number of attended tokens before it), not from the column: a text gets the same
state whichever side it is padded on. Rotary models (Qwen3) are blind to such a shift anyway;
encoders with absolute position embeddings are not. Mixed precision: the weights stay fp32 (AdamW's master
copy) and the forward runs under bf16 autocast where the device supports it (recipe: bf16).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from f2llm import storage
from f2llm.kernels import pool_with_norms
from f2llm.model.tokenizer import encode_with_eos

Pooling = Literal["last", "mean"]
PaddingSide = Literal["right", "left"]
Precision = Literal["auto", "bf16", "fp32"]


def pad_batch(ids: list[list[int]], pad_id: int, side: PaddingSide = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token id lists -> (input_ids [B, L], attention_mask [B, L])."""
    length = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    for i, row in enumerate(ids):
        cols = slice(0, len(row)) if side == "right" else slice(length - len(row), length)
        input_ids[i, cols] = torch.tensor(row, dtype=torch.long)
        mask[i, cols] = 1
    return input_ids, mask


def length_buckets(lengths: list[int], fill: float = 0.75) -> list[list[int]]:
    """Row indices in groups that pad little: by length, longest first; a group closes at the
    first row shorter than `fill` x its longest, so each group's padded size is at most
    1/fill x its real tokens. A training batch mixes long instructed queries with short
    documents: padding them all to the longest query costs ~2.8x the real tokens on the sample.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] >= fill * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """bf16 for "bf16", and for "auto" on a CUDA device that has it; None means plain fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.bfloat16 if cuda_bf16 else None


class Encoder(torch.nn.Module):
    def __init__(
        self, model, tokenizer, max_length: int = 1024, pooling: Pooling = "last",
        padding_side: PaddingSide = "right", precision: Precision = "auto",
    ):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pooling = pooling
        self.padding_side = padding_side
        self.precision = precision
        self.bucketing = True  # off under FSDP: ranks must call the backbone equally often

    @classmethod
    def load(
        cls, uri: str | Path, max_length: int = 1024, pooling: Pooling = "last",
        trust_remote_code: bool = False, dtype: torch.dtype = torch.float32,
        padding_side: PaddingSide = "right", precision: Precision = "auto",
    ) -> "Encoder":
        path = storage.local_dir(str(uri))
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=dtype)
        return cls(model, tokenizer, max_length, pooling, padding_side, precision)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def gradient_checkpointing(self, enabled: bool = True) -> "Encoder":
        """Recompute each layer's activations in backward: memory O(layers) less, ~30% more compute."""
        model = self.model
        renamed = hasattr(model, "activation_checkpointing_enable")  # transformers >= 5.22
        if enabled:
            model.config.use_cache = False
            if renamed:
                model.activation_checkpointing_enable({"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        elif renamed and model.is_activation_checkpointing:
            model.activation_checkpointing_disable()
        elif not renamed and model.is_gradient_checkpointing:
            model.gradient_checkpointing_disable()
        return self

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return encode_with_eos(self.tokenizer, texts, self.max_length)

    def forward(self, ids: list[list[int]]) -> torch.Tensor:
        """Raw (unnormalised) pooled states [B, H], at least fp32; the training losses and KD need these.

        Rows run in length buckets (`length_buckets`), one backbone call each, and come back in
        the order given.
        """
        groups = length_buckets([len(row) for row in ids]) if self.bucketing else [list(range(len(ids)))]
        if len(groups) == 1:
            return self._pooled(ids)
        states = torch.cat([self._pooled([ids[i] for i in group]) for group in groups])
        order = torch.tensor([i for group in groups for i in group], device=states.device)
        return states[torch.argsort(order)]

    def _pooled(self, ids: list[list[int]]) -> torch.Tensor:
        device = self.device
        input_ids, mask = pad_batch(ids, self.tokenizer.pad_token_id, self.padding_side)
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
        low = autocast_dtype(self.precision, device)
        with torch.autocast(device.type, dtype=low or torch.float32, enabled=low is not None):
            hidden = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions).last_hidden_state
        return pool_with_norms(hidden, mask, self.pooling)[0]  # at least fp32; fused on CUDA

    @torch.inference_mode()
    def encode(
        self, texts: list[str], prompt: str = "", dim: int | None = None,
        batch_size: int = 64, progress: bool = False,
    ) -> torch.Tensor:
        """L2-normalised embeddings [N, dim or H] in float32 on the CPU."""
        self.model.eval()
        ids = self.tokenize([prompt + t for t in texts])
        out = []
        starts = range(0, len(ids), batch_size)
        for start in tqdm(starts, desc="encode", disable=not progress):
            out.append(self(ids[start : start + batch_size]).cpu())
        vectors = torch.cat(out) if out else torch.empty(0, self.hidden_size)
        if dim is not None:
            vectors = vectors[:, :dim]
        return F.normalize(vectors, dim=-1)
