"""Hot-path ops of the recipe, one interface for every device.

Each op has a plain torch reference here; the Triton kernels (CUDA) plug in behind the same
functions, so the trainer and the server never branch on the device themselves.
"""

from f2llm.kernels.distill import distillation_mse
from f2llm.kernels.infonce import hard_negative_infonce, in_batch_infonce
from f2llm.kernels.pooling import last_token_pool, mean_pool

__all__ = ["distillation_mse", "hard_negative_infonce", "in_batch_infonce", "last_token_pool", "mean_pool"]
