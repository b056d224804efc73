"""Hot-path ops of the recipe, one interface for every device.

Each op has a plain torch reference and a Triton kernel behind the same function: CUDA tensors
take the Triton path, everything else the torch path (`dispatch.py`), so the trainer and the
server never branch on the device themselves.

- `pool_with_norms`: last-token / masked-mean pooling + every Matryoshka prefix's inverse norm.
- `in_batch_matryoshka_infonce`: the in-batch InfoNCE of all dims in one tiled pass (online
  log-sum-exp, never the B x M matrix); `hard_negative_infonce` and `in_batch_infonce` are the
  one-dim references.
- `distillation_mse`: the KD term, teacher truncated to the student's width.

`aot.py` compiles every launch of these for sm_80/sm_90 without a GPU (registers, spills,
shared memory); `dot_emulation.py` replays the InfoNCE kernels' tensor-core rounding in torch.
"""

from f2llm.kernels.distill import distillation_mse
from f2llm.kernels.infonce import (
    hard_negative_infonce,
    in_batch_infonce,
    in_batch_matryoshka_infonce,
    prefix_inv_norms,
)
from f2llm.kernels.pooling import last_token_pool, mean_pool, pool_with_norms

__all__ = [
    "distillation_mse", "hard_negative_infonce", "in_batch_infonce", "in_batch_matryoshka_infonce",
    "last_token_pool", "mean_pool", "pool_with_norms", "prefix_inv_norms",
]
