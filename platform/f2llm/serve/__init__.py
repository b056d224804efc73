"""Serving an exported model: the KServe predictor (v1, v2), the OpenAI-compatible routes, dynamic
batching, and the vLLM runtime's command line (run in vLLM's own environment)."""
