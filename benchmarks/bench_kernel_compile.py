"""Every Triton kernel launch of the recipe, compiled for sm_80 and sm_90 without a GPU.

The ops run on meta tensors for each F2LLM-v2 width and the demo's (f2llm.kernels.aot records
their launches and compiles each with every autotune config): pooling (last / mean, fp32 / bf16
states, the encoder's single full-width norm and every Matryoshka dim, sequence lengths with and
without 16-divisibility), the in-batch Matryoshka InfoNCE (fp32 / bf16, the global batch of 512
and an odd one, both backward directions) and the distillation MSE (each student against its
recipe teacher's width). Registers, spills, stack and shared memory of each go to
benchmarks/results/kernels_compile.json (or --out); `tests/test_kernel_compile.py` fails on a
compile error, a limit crossed, or a committed JSON that no longer matches the kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compiled kernels, not interpreted ones
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # as the runtime, without its warning

import torch  # noqa: E402

from f2llm.kernels import distillation_mse, in_batch_matryoshka_infonce, pool_with_norms  # noqa: E402
from f2llm.kernels import aot  # noqa: E402
from f2llm.model.matryoshka import matryoshka_dims  # noqa: E402
from f2llm.model.recipes import RECIPES  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

DEMO_WIDTH = 64  # configs/demo.yaml's tiny model
TAU = 0.05


def widths() -> dict[int, int | None]:
    """Every width trained, and the width of its KD teacher (None: no teacher)."""
    out = {DEMO_WIDTH: DEMO_WIDTH}
    for r in RECIPES.values():
        out[r.hidden] = RECIPES[r.teacher].hidden if r.teacher else None
    return out


def _meta(*shape, dtype=torch.float32, grad=True):
    return torch.empty(*shape, dtype=dtype, device="meta", requires_grad=grad)


def calls():
    """One closure per op call: forward and backward, so both directions' launches are recorded."""
    for hidden, teacher in widths().items():
        dims = matryoshka_dims(hidden)
        for dtype in (torch.float32, torch.bfloat16):
            for length in (1000, 1024):
                for mode in ("last", "mean"):
                    for pooled_dims in (None, dims):  # the encoder's full-width norm; every Matryoshka dim
                        def pool(hidden=hidden, dtype=dtype, length=length, mode=mode, pooled_dims=pooled_dims):
                            states = _meta(4, length, hidden, dtype=dtype)
                            mask = torch.empty(4, length, dtype=torch.int64, device="meta")
                            pooled, inv = pool_with_norms(states, mask, mode, pooled_dims)
                            (pooled.sum() + inv.sum()).backward()
                        yield pool
            for rows in (512, 37):
                def infonce(hidden=hidden, dims=dims, dtype=dtype, rows=rows):
                    q, p = _meta(rows, hidden, dtype=dtype), _meta(rows, hidden, dtype=dtype)
                    in_batch_matryoshka_infonce(q, p, dims, TAU).sum().backward()
                yield infonce
            if teacher:
                def distill(hidden=hidden, teacher=teacher, dtype=dtype):
                    distillation_mse(_meta(96, hidden, dtype=dtype), _meta(96, teacher, dtype=dtype, grad=False)).backward()
                yield distill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "kernels_compile.json")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    started = time.perf_counter()
    jobs = aot.jobs(aot.record(calls()))
    print(f"{len(jobs)} compiles (kernel x specialization x target)", flush=True)
    rows = aot.compile_all(jobs, workers=args.workers)
    compiled = aot.as_json(rows)
    payload = {
        "benchmark": "kernels_compile", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(), "triton": __import__("triton").__version__,
        "seconds": round(time.perf_counter() - started, 1),
        "targets": {t.name: {"max_shared_per_block": t.max_shared_per_block, "registers_per_sm": t.registers_per_sm}
                    for t in aot.TARGETS},
        "max_spill_bytes": aot.MAX_SPILL_BYTES, "widths": {str(k): v for k, v in widths().items()},
        "compiled": compiled,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    bad = [r for r in compiled if r["problems"]]
    by_kernel = {}
    for r in compiled:
        k = by_kernel.setdefault(r["kernel"], {"compiles": 0, "max_registers": 0, "max_shared": 0, "max_spill": 0})
        k["compiles"] += 1
        if not r["error"]:
            k["max_registers"] = max(k["max_registers"], r["registers"])
            k["max_shared"] = max(k["max_shared"], r["shared_bytes"])
            k["max_spill"] = max(k["max_spill"], r["spill_stores"], r["spill_loads"])
    print(json.dumps(by_kernel, indent=1))
    print(f"{len(compiled)} compiled in {payload['seconds']} s, {len(bad)} with problems -> {args.out}")
    for r in bad[:20]:
        print(" ", r["kernel"], r["specialization"], r["target"], r["problems"])


if __name__ == "__main__":
    main()
