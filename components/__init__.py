"""Kubeflow Pipelines components and the F2LLM-v2 pipeline (importable as f2llm.components)."""
