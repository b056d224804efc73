"""F2LLM-v2 platform: the recipe's stages as a library, run by Kubeflow Pipelines."""

__version__ = "0.1.0"
