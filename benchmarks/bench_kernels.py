"""Kernel benchmarks: the tiled InfoNCE's memory on the CPU; speed and bandwidth on a GPU.

CPU (always): peak memory of one forward+backward of the in-batch Matryoshka InfoNCE at
B = 8192, d = 1024 (8 dims), the chunked torch path vs the naive one (a B x B logit matrix per
dim, kept for backward). Each runs in its own process; the figure is the process's peak RSS
above its RSS once the inputs exist (the inputs' gradients are inside it, for both). Goal:
tiled <= 1/8 of naive.

GPU (when CUDA is present): the fused pooling kernel's GB/s and share of the device's HBM
bandwidth (goal >= 80%); InfoNCE forward+backward time and peak memory of Triton vs torch eager
vs torch.compile for B in {1k, 4k, 8k, 16k}, d in {1024, 4096} (goal >= 2x eager, memory linear in
B); bf16 inputs through the compiled kernels vs the fp32 reference.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb, write  # noqa: E402

TAU = 0.05
HBM_TBPS = {"H100": 3.35, "H200": 4.8, "A100": 2.0}  # SXM datasheet figures


def _dims(h: int) -> list[int]:
    return sorted({d for d in (8, 16, 32, 64, 128, 256, 512, 1024, 2048) if d < h} | {h}, reverse=True)


def naive_in_batch(q, p, dims):
    import torch.nn.functional as F

    from f2llm.kernels import in_batch_infonce

    return sum(in_batch_infonce(F.normalize(q[:, :d], dim=-1), F.normalize(p[:, :d], dim=-1), TAU) for d in dims)


def tiled_in_batch(q, p, dims):
    from f2llm.kernels import in_batch_matryoshka_infonce

    return in_batch_matryoshka_infonce(q, p, dims, TAU).sum()


def cpu_worker(variant: str, batch: int, dim: int) -> dict:
    import torch

    import f2llm.kernels  # noqa: F401  (module memory, triton included, stays out of the figure)

    torch.manual_seed(0)
    q = torch.randn(batch, dim, requires_grad=True)
    p = torch.randn(batch, dim, requires_grad=True)
    baseline = peak_rss_mb()
    started = time.perf_counter()
    loss = (naive_in_batch if variant == "naive" else tiled_in_batch)(q, p, _dims(dim))
    loss.backward()
    return {"loss": loss.item(), "seconds": round(time.perf_counter() - started, 2),
            "peak_rss_above_inputs_mb": round(peak_rss_mb() - baseline, 1)}


def cpu_memory(batch: int, dim: int) -> dict:
    out = {}
    for variant in ("naive", "tiled"):
        cmd = [sys.executable, __file__, "--cpu-worker", variant, "--batch", str(batch), "--dim", str(dim)]
        # glibc raises its mmap threshold as big blocks are freed, then keeps freed mid-size blocks
        # in the heap: RSS would show the allocator's high-water mark, not the live tensors.
        env = {"F2LLM_KERNELS": "torch", "OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin", "MALLOC_MMAP_THRESHOLD_": "65536"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        out[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        print(variant, out[variant], flush=True)
    out["memory_ratio_tiled_over_naive"] = round(
        out["tiled"]["peak_rss_above_inputs_mb"] / out["naive"]["peak_rss_above_inputs_mb"], 4)
    out["loss_abs_diff"] = abs(out["tiled"]["loss"] - out["naive"]["loss"])
    return {"batch": batch, "dim": dim, "dims": _dims(dim), **out}


def gpu() -> dict:
    import torch
    import triton.testing

    from f2llm.kernels import pool_with_norms

    name = torch.cuda.get_device_name(0)
    peak_tbps = next((v for k, v in HBM_TBPS.items() if k in name), None)
    pooling = []
    for B, L, H in ((64, 2048, 4096), (256, 512, 1024), (32, 8192, 2560)):
        hidden = torch.randn(B, L, H, device="cuda", dtype=torch.bfloat16)
        mask = torch.ones(B, L, device="cuda", dtype=torch.long)
        ms = triton.testing.do_bench(lambda: pool_with_norms(hidden, mask, "mean", _dims(H)))
        gbps = hidden.numel() * hidden.element_size() / ms / 1e6
        pooling.append({"B": B, "L": L, "H": H, "ms": round(ms, 4), "GB_per_s": round(gbps, 1),
                        "share_of_hbm": round(gbps / 1000 / peak_tbps, 3) if peak_tbps else None})
        print(pooling[-1], flush=True)
    compiled = torch.compile(naive_in_batch)
    infonce = []
    for dim in (1024, 4096):
        for batch in (1024, 4096, 8192, 16384):  # 8192 x 1024 (8 dims): the goal, >= 2x eager
            q = torch.randn(batch, dim, device="cuda", requires_grad=True)
            p = torch.randn(batch, dim, device="cuda", requires_grad=True)
            row = {"B": batch, "d": dim}
            for label, fn in (("triton", tiled_in_batch), ("eager", naive_in_batch), ("compile", compiled)):
                def step():
                    fn(q, p, _dims(dim)).backward()
                try:
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    ms = triton.testing.do_bench(step)
                    row[f"{label}_ms"] = round(ms, 3)
                    row[f"{label}_peak_mb"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
                except torch.OutOfMemoryError:
                    row[f"{label}_ms"] = "OOM"
                    torch.cuda.empty_cache()
            if isinstance(row.get("eager_ms"), float):
                row["speedup_vs_eager"] = round(row["eager_ms"] / row["triton_ms"], 2)
            infonce.append(row)
            print(row, flush=True)
    q = torch.randn(4096, 1024, device="cuda")
    p = torch.randn(4096, 1024, device="cuda")
    want = tiled_in_batch(q.double().cpu(), p.double().cpu(), _dims(1024)).item()  # fp64 torch path
    got = tiled_in_batch(q.bfloat16(), p.bfloat16(), _dims(1024)).item()
    return {"device": name, "hbm_tbps_datasheet": peak_tbps, "pooling_mean_bf16": pooling, "infonce_fwd_bwd_fp32": infonce,
            "bf16_vs_fp64_reference": {"fp64": want, "bf16_triton": got, "rel_err": abs(got - want) / abs(want)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cpu-worker", choices=["naive", "tiled"])
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--dim", type=int, default=1024)
    args = parser.parse_args()
    if args.cpu_worker:
        print(json.dumps(cpu_worker(args.cpu_worker, args.batch, args.dim)))
        return
    import torch

    write("kernels_cpu", {"infonce_memory": cpu_memory(args.batch, args.dim)})
    if torch.cuda.is_available():
        write("kernels_" + torch.cuda.get_device_name(0).replace(" ", "_").lower(), gpu())


if __name__ == "__main__":
    main()
