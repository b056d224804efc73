"""Pooling of token states into one vector per sequence (torch reference).

F2LLM-v2 embeds a text as the final hidden state of its last real token (EOS). Finding it from
the attention mask works for right padding (last 1 before the zeros) and left padding (position
L-1) alike: index = L - 1 - argmax(flip(mask)).
"""

from __future__ import annotations

import torch


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, L] mask -> [B] position of each row's last attended token."""
    length = attention_mask.shape[1]
    return length - 1 - attention_mask.flip(dims=[1]).to(torch.int64).argmax(dim=1)


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, L, H] states, [B, L] mask -> [B, H] state of each row's last attended token."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last_token_index(attention_mask)]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, L, H] states, [B, L] mask -> [B, H] mean over attended tokens."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
