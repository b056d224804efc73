"""FSDP vs DDP at 2 CPU ranks on the 80M shape: per-rank state and peak RSS, and samples/s (issue 16).

The model is a random-init Qwen3 of the 80M recipe shape (`qwen3_config("80M")`: hidden 320, MLP
2048, 8 layers, vocabulary 151,936, so the embedding table is real size), with a tiny BPE tokenizer
trained on the bundled sample; the data is that sample's stage-2 retrieval + bitext rows, prepared
by the pipeline's prepare stage (as bench_trainer). Each strategy trains the same stage-2 steps,
fp32 on the CPU, as 2 torchrun ranks (gloo, OMP_NUM_THREADS=1: a core a rank); each rank writes
its own figures (this file run with --worker calls `train_stage` directly).

Measured per rank:

- state_bytes (the trainer's summary): this rank's bytes of weights + gradients + AdamW moments,
  its local shards under FSDP. Expected, with P parameters in fp32:
      DDP   16 P        (4 weights + 4 gradient + 4 + 4 for AdamW's two moments)
      FSDP  16 P / W    (every parameter sharded over the W = 2 ranks, the embedding with the root
                         unit), so fsdp / ddp = 1 / W = 0.5. Goal: <= 0.6.
- peak RSS (ru_maxrss). Weaker than the state ratio: every rank first loads the whole model
  (`Encoder.load`, then `fully_shard`), the end gathers the full state dict to save the model,
  and the Python/torch runtime (~0.45 GB) is in both; only the steady training state shrinks.
  Activations dominate at this batch, and FSDP runs more of them: it turns off the encoder's
  length bucketing (every rank must call the backbone equally often), so a rank's share is padded
  to its longest row, 2.46x the real tokens on this sample vs 1.14x bucketed under DDP. Its peak
  RSS is thus above DDP's (a DDP run with bucketing off peaks about as high as FSDP).

Throughput: global samples/s from rank 0's step log after `--warmup` steps (the summary's own
figure includes the warm-up and the final save); FSDP's includes the extra padding above.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2


def setup(work: Path, max_length: int) -> dict:
    """The 80M-shaped model (tiny tokenizer) and the prepared stage-2 tables. -> P and row counts."""
    import torch
    from transformers import AutoTokenizer, Qwen3Model

    from f2llm.config import DataConfig, TinyModelConfig
    from f2llm.data.ingest import ingest
    from f2llm.data.prepare import prepare
    from f2llm.model.base_model import build_tiny_model, save_random_model
    from f2llm.model.recipes import qwen3_config

    rows = ingest(str(ROOT / "data" / "sample"))
    rows = rows[rows["task"].isin(["retrieval", "bitext"])]
    rows = rows.assign(source=rows["task"])  # the sample's per-language sources are tiny: pool them
    build_tiny_model(TinyModelConfig(), [*rows["query"], *rows["passage"]], work / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(work / "tiny")
    config = qwen3_config("80M")
    save_random_model(config, tokenizer, work / "model")
    with torch.device("meta"):
        parameters = sum(p.numel() for p in Qwen3Model(config).parameters())
    stats = prepare(rows, tokenizer, DataConfig(uri="unused"), max_length, work / "data")
    return {"parameters": parameters, "rows": int(stats["stage2_rows"]), "sources": int(stats["stage2_sources"])}


def worker(args: argparse.Namespace) -> None:
    """One torchrun rank: train, then write rank{RANK}.json (summary + this process's peak RSS)."""
    import torch.distributed as dist

    from f2llm.config import StageConfig, TrainConfig
    from f2llm.train.trainer import train_stage

    work, rank = Path(args.work), int(os.environ["RANK"])
    stage = StageConfig(epochs=100, max_steps=args.steps, lr=1e-5, batch_size=args.batch, warmup_ratio=0.1)
    cfg = TrainConfig(stage1=None, stage2=stage, strategy=args.worker, precision="fp32")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = work / args.worker
    summary = train_stage(work / "model", work / "data", 2, cfg, args.max_length, out / "model", out / "log.jsonl")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (out / f"rank{rank}.json").write_text(json.dumps({**summary, "rss_before_mb": before, "peak_rss_mb": peak}))
    dist.barrier()
    dist.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(work: Path, strategy: str, args: argparse.Namespace) -> dict:
    """Launch 2 ranks for `strategy`; -> wall seconds, rank 0's log-based samples/s, per-rank figures."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
               "--master_addr", "127.0.0.1", "--master_port", str(_port()), __file__, "--worker", strategy,
               "--work", str(work), *[f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("steps", "batch", "max_length")]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{strategy} failed:\n{done.stderr[-4000:]}")
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (work / strategy / "log.jsonl").read_text().splitlines()]
    times, samples = [r["elapsed_s"] for r in records], [r["samples"] for r in records]
    w = args.warmup
    ranks = [json.loads((work / strategy / f"rank{r}.json").read_text()) for r in range(WORLD)]
    return {
        "wall_seconds": round(wall, 1), "steps": len(records), "mean_batch": sum(samples) / len(samples),
        "samples_per_s": sum(samples[w:]) / (times[-1] - times[w - 1]),
        "samples_per_s_summary_incl_warmup_and_save": ranks[0]["samples_per_s"],
        "final_loss": records[-1]["loss"],
        "ranks": [{k: r[k] for k in ("state_bytes", "rss_before_mb", "peak_rss_mb", "world_size")} for r in ranks],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of samples/s")
    parser.add_argument("--batch", type=int, default=16, help="queries per global batch")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--worker", choices=["ddp", "fsdp"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="f2llm-bench-fsdp-") as tmp:
        work = Path(tmp)
        data = setup(work, args.max_length)
        results = {}
        for strategy in ("ddp", "fsdp"):
            results[strategy] = run(work, strategy, args)
            print(strategy, json.dumps(results[strategy]), flush=True)
    p, ddp, fsdp = data["parameters"], results["ddp"], results["fsdp"]
    state_ratio = [f["state_bytes"] / d["state_bytes"] for d, f in zip(ddp["ranks"], fsdp["ranks"])]
    rss_ratio = [f["peak_rss_mb"] / d["peak_rss_mb"] for d, f in zip(ddp["ranks"], fsdp["ranks"])]
    write("fsdp_cpu", {
        "setup": {"model": "random-init Qwen3, 80M recipe shape (qwen3_config('80M')), tiny BPE tokenizer",
                  "ranks": WORLD, "backend": "gloo", "omp_threads_per_rank": 1, "batch_size": args.batch,
                  "steps": args.steps, "warmup_steps_excluded": args.warmup, "max_length": args.max_length,
                  "precision": "fp32", **data},
        "expected_state_bytes": {"ddp": 16 * p, "fsdp": 16 * p / WORLD, "ratio": 1 / WORLD},
        "ddp": ddp, "fsdp": fsdp,
        "state_ratio_per_rank": [round(r, 4) for r in state_ratio],
        "peak_rss_ratio_per_rank": [round(r, 4) for r in rss_ratio],
        "samples_per_s_ratio": round(fsdp["samples_per_s"] / ddp["samples_per_s"], 3),
        "goal": "fsdp state_bytes / ddp state_bytes <= 0.6 on every rank",
        "goal_met": all(r <= 0.6 for r in state_ratio),
        "total_seconds": round(time.perf_counter() - started, 1),
    })


if __name__ == "__main__":
    main()
