"""Distillation term of F2LLM-v2 (torch reference).

MSE between the student's raw (unnormalised) EOS states and the frozen teacher's, the teacher's
vectors truncated to the student's width (it relies on the teacher's Matryoshka prefix):

    L_kd = mean_{i, d <= D_s} (s_id - t_id)^2

The trainer sums it over the query, positive and negative states (recipe: kd_weight 1.0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """student [N, D_s], teacher [N, D_t >= D_s] (no gradient flows into the teacher)."""
    width = student.shape[-1]
    if teacher.shape[-1] < width:
        raise ValueError(f"teacher width {teacher.shape[-1]} is smaller than the student's {width}")
    return F.mse_loss(student.float(), teacher[..., :width].detach().float())
