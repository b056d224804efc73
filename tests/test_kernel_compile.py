"""Every Triton kernel launch of the recipe compiled for sm_80 (A100) and sm_90 (H100/H200) on a
machine without a GPU (benchmarks/bench_kernel_compile.py, f2llm.kernels.aot): no compile error,
no register spill, no more shared memory than a block gets; every dtype, Matryoshka dim count,
autotune config and backward direction is in it; and the committed JSON is what the kernels
compile to now."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import triton

from f2llm.kernels.infonce import LSE_CONFIGS
from f2llm.model.matryoshka import matryoshka_dims
from f2llm.model.recipes import RECIPES

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_kernel_compile.py"
COMMITTED = ROOT / "benchmarks" / "results" / "kernels_compile.json"
TARGETS = {"sm_80", "sm_90"}
# Matryoshka dims per width, counted by hand: 8, 16, ... below the width, plus the width
# (80M: 8..256 + 320 = 7; 160M-0.6B: 8..512 + width = 8; 1.7B: 9; 4B, 8B: 10; 14B: 11; demo 64: 4)
DIM_COUNTS = {7, 8, 9, 10, 11, 4}


def _compiler_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compiled, not interpreted


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("aot") / "kernels_compile.json"
    subprocess.run([sys.executable, str(BENCH), "--out", str(out)], env=_compiler_env(), check=True, timeout=1800)
    return json.loads(out.read_text())


def test_dim_counts_by_hand_match_the_recipe():
    assert {len(matryoshka_dims(r.hidden)) for r in RECIPES.values()} | {len(matryoshka_dims(64))} == DIM_COUNTS


def test_every_launch_compiles_within_its_targets_limits(compiled):
    bad = [(r["kernel"], r["specialization"], r["target"], r["problems"]) for r in compiled["compiled"] if r["problems"]]
    assert not bad, f"{len(bad)} compiles would fail or spill on the GPU, e.g. {bad[:5]}"
    assert compiled["max_spill_bytes"] == 0
    keys = [(r["kernel"], r["specialization"], r["target"]) for r in compiled["compiled"]]
    assert len(set(keys)) == len(keys)  # one row a specialisation: nothing compiled twice or merged
    for row in compiled["compiled"]:
        assert row["registers"] <= 255 and row["shared_bytes"] <= compiled["targets"][row["target"]]["max_shared_per_block"]


def _have(rows, kernel, num_warps=None, num_stages=None, **constants):
    return {(r["target"], tuple(r["dtypes"])) for r in rows
            if r["kernel"] == kernel and all(r["constants"].get(k) == v for k, v in constants.items())
            and num_warps in (None, r["num_warps"]) and num_stages in (None, r["num_stages"])}


def test_every_specialization_is_compiled(compiled):
    rows = compiled["compiled"]
    for dims in DIM_COUNTS:
        jp = triton.next_power_of_2(dims)
        for config in LSE_CONFIGS:
            blocks = dict(config.kwargs, num_warps=config.num_warps, num_stages=config.num_stages)
            for precision, dtypes in (("bf16", ("bf16", "fp32", "i32")), ("tf32", ("fp32", "i32"))):
                want = {(t, dtypes) for t in TARGETS}
                args = dict(J=dims, JP=jp, PRECISION=precision, **blocks)
                assert want <= _have(rows, "_lse_fwd_kernel", **args), (dims, blocks, precision)
                for rows_are_queries in (True, False):
                    assert want <= _have(rows, "_lse_bwd_kernel", ROWS_ARE_QUERIES=rows_are_queries, **args)
    for width in [64] + [r.hidden for r in RECIPES.values()]:
        block_h = triton.next_power_of_2(width)
        for mean in (True, False):
            for dims in (1, len(matryoshka_dims(width))):  # the encoder's full-width norm; every dim
                fwd = _have(rows, "_pool_fwd_kernel", BLOCK_H=block_h, MEAN=mean, J=dims)
                assert {(t, d) for t in TARGETS for d in (("bf16", "fp32", "i32", "i64"), ("fp32", "i32", "i64"))} <= fwd
                assert {t for t, _ in _have(rows, "_pool_bwd_kernel", BLOCK_H=block_h, MEAN=mean, J=dims)} == TARGETS
    for kernel in ("_sq_diff_kernel", "_sq_diff_bwd_kernel"):
        assert {(t, d) for t in TARGETS for d in (("bf16", "fp32"), ("fp32",))} <= _have(rows, kernel)


def test_the_committed_results_are_what_the_kernels_compile_to(compiled):
    """benchmarks/results/kernels_compile.json is regenerated with
    `python benchmarks/bench_kernel_compile.py` whenever a kernel or its launch changes."""
    def table(payload):
        return {(r["kernel"], r["specialization"], r["target"]):
                (r["registers"], r["spill_stores"], r["spill_loads"], r["shared_bytes"], r["error"])
                for r in payload["compiled"]}

    committed, fresh = table(json.loads(COMMITTED.read_text())), table(compiled)
    assert committed.keys() == fresh.keys(), (
        f"{len(fresh.keys() - committed.keys())} compiles missing from {COMMITTED.name}, "
        f"{len(committed.keys() - fresh.keys())} no longer made: rerun {BENCH.name}")
    changed = {k: (committed[k], fresh[k]) for k in fresh if committed[k] != fresh[k]}
    assert not changed, f"{len(changed)} compiles differ from {COMMITTED.name}, e.g. {list(changed.items())[:3]}"


OVERSIZED = """
import json, torch
from f2llm.kernels import aot, in_batch_matryoshka_infonce
launches = aot.record([lambda: in_batch_matryoshka_infonce(
    torch.empty(512, 1024, device="meta"), torch.empty(512, 1024, device="meta"), [1024, 512], 0.05)])
job = aot.jobs(launches[:1], [aot.TARGETS[0]])[0]
# four pipeline stages of 256 x 256 x 128 fp32 tiles: about 1 MiB of shared memory a block
big = aot.Job(job.module, job.name, job.args, ((("BLOCK_D", 128), ("BLOCK_M", 256), ("BLOCK_N", 256)), 8, 4), job.target)
row = aot.compile_job(big)
print(json.dumps({"shared": row.shared_bytes, "error": row.error, "problems": row.problems(aot.TARGETS[0])}))
"""


def test_a_block_too_big_for_the_gpu_is_caught():
    done = subprocess.run([sys.executable, "-c", OVERSIZED], env=_compiler_env(), capture_output=True, text=True,
                          check=True, timeout=600)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] is None and result["shared"] > 163 * 1024, result
    assert any("shared memory" in p for p in result["problems"]), result
