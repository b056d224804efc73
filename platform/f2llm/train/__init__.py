"""Training one stage of the recipe: the trainer script (`trainer.py`, `python -m f2llm.train`),
its losses, the one-source-per-batch sampler, checkpoints and data parallelism."""
