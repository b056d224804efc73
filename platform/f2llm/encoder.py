"""Text -> embedding with any Hugging Face decoder (Qwen3 family) or encoder checkpoint.

One path serves training, evaluation, export checks and serving: tokenise with the EOS rule,
run the backbone, pool the last token (or mean), and for inference L2-normalise and optionally
truncate to a Matryoshka prefix (re-normalised after slicing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from f2llm import storage
from f2llm.kernels import last_token_pool, mean_pool
from f2llm.tokenizer import encode_with_eos

Pooling = Literal["last", "mean"]


def pad_batch(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists -> (input_ids [B, L], attention_mask [B, L])."""
    length = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return input_ids, mask


class Encoder(torch.nn.Module):
    def __init__(self, model, tokenizer, max_length: int = 1024, pooling: Pooling = "last"):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pooling = pooling

    @classmethod
    def load(
        cls, uri: str | Path, max_length: int = 1024, pooling: Pooling = "last",
        trust_remote_code: bool = False, dtype: torch.dtype = torch.float32,
    ) -> "Encoder":
        path = storage.local_dir(str(uri))
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=dtype)
        return cls(model, tokenizer, max_length, pooling)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return encode_with_eos(self.tokenizer, texts, self.max_length)

    def forward(self, ids: list[list[int]]) -> torch.Tensor:
        """Raw (unnormalised) pooled states [B, H]; the training losses and KD need these."""
        device = next(self.model.parameters()).device
        input_ids, mask = pad_batch(ids, self.tokenizer.pad_token_id)
        input_ids, mask = input_ids.to(device), mask.to(device)
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        pool = last_token_pool if self.pooling == "last" else mean_pool
        return pool(hidden, mask)

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
            out.append(self(ids[start : start + batch_size]).float().cpu())
        vectors = torch.cat(out) if out else torch.empty(0, self.hidden_size)
        if dim is not None:
            vectors = vectors[:, :dim]
        return F.normalize(vectors, dim=-1)
