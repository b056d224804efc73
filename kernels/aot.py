"""Ahead-of-time compilation of every kernel launch the ops can make, for GPUs this machine lacks.

Why: the interpreter runs a kernel as numpy on the CPU, so it cannot see what only compilation
shows: type errors the interpreter lets through (loop-carried values changing type), register
spills, shared memory beyond what a GPU grants a block. Triton compiles for a target without a
device, so every launch is compiled here, for sm_80 (A100) and sm_90 (H100/H200).

Which launches: the ops run on meta tensors (shapes, no data) under `dispatch.recording()`,
forward and backward, so what is compiled is what the dispatch would launch, not a copy of its
rules. Each launch is specialised by Triton's own binder (a pointer or integer divisible by 16
is marked so, as a launch on a device would) and compiled once per autotune config of its
kernel. `ptxas -v` (the one Triton runs, with its flags) gives registers and spills; Triton's
metadata the shared memory a launch asks for.

A launch fails here where it would fail on the device, with Triton's own checks at load time:
shared memory above the block's opt-in limit, or more threads than the registers allow. Spills
are counted, and `check` bounds them (see `MAX_SPILL_BYTES`).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget

from f2llm.kernels.dispatch import Launch, recording


@dataclass(frozen=True)
class Target:
    """A GPU's limits, from the CUDA C Programming Guide (technical specifications per compute
    capability): shared memory a block may opt into, and the register file of an SM."""

    name: str
    capability: int
    max_shared_per_block: int
    registers_per_sm: int = 65536
    max_threads_per_block: int = 1024


TARGETS = (
    Target("sm_80", 80, 163 * 1024),  # A100
    Target("sm_90", 90, 227 * 1024),  # H100, H200
)

# A spill is a register written to local memory (through L1) and read back. The kernels here keep
# their tiles in registers by design; a spill means a block configuration too large for the
# register file, and a smaller one exists. So none is allowed.
MAX_SPILL_BYTES = 0


@dataclass
class Compiled:
    kernel: str
    specialization: str  # what differs between launches of one kernel: dtypes, constexprs, config
    target: str
    dtypes: list[str]  # of the pointer arguments
    constants: dict  # constexpr values (block shapes, J, MEAN, PRECISION, ...)
    num_warps: int
    num_stages: int
    registers: int | None = None
    spill_stores: int | None = None
    spill_loads: int | None = None
    stack_bytes: int | None = None
    shared_bytes: int | None = None
    error: str | None = None

    def problems(self, target: Target, max_spill: int = MAX_SPILL_BYTES) -> list[str]:
        """Why this compile would not run (or run badly) on the target; empty when it is fine."""
        if self.error:
            return [f"compile error: {self.error}"]
        out = []
        if self.shared_bytes > target.max_shared_per_block:
            out.append(f"shared memory {self.shared_bytes} B > {target.max_shared_per_block} B per block")
        threads = self.num_warps * 32
        allocated = -(-self.registers // 8) * 8  # registers are allocated 8 a thread
        if threads > target.max_threads_per_block or threads * allocated > target.registers_per_sm:
            out.append(f"{threads} threads x {self.registers} registers do not fit an SM's {target.registers_per_sm}")
        if max(self.spill_stores, self.spill_loads) > max_spill:
            out.append(f"spills {self.spill_stores} B stored / {self.spill_loads} B loaded > {max_spill} B")
        return out


def record(calls: Iterable[Callable[[], None]]) -> list[Launch]:
    """Run each op call (on meta tensors, F2LLM_KERNELS=triton) and return every launch it made."""
    previous = os.environ.get("F2LLM_KERNELS")
    os.environ["F2LLM_KERNELS"] = "triton"
    try:
        with recording() as launches:
            for call in calls:
                call()
    finally:
        if previous is None:
            os.environ.pop("F2LLM_KERNELS")
        else:
            os.environ["F2LLM_KERNELS"] = previous
    return list(launches)


@dataclass(frozen=True)
class Job:
    """One kernel x specialisation x target: picklable, compiled in a worker process."""

    module: str
    name: str
    args: tuple  # (name, value) with tensors as ("tensor", dtype, shape, strides, storage offset)
    config: tuple  # (constexpr kwargs, num_warps, num_stages)
    target: Target


def jobs(launches: list[Launch], targets: Iterable[Target] = TARGETS) -> list[Job]:
    """Every (launch x autotune config x target), once per distinct specialisation: the one
    Triton's own binder gives the arguments (dtypes, alignment, integers == 1 or % 16)."""
    out, seen = [], set()
    for item in launches:
        kernel = item.kernel
        configs = getattr(kernel, "configs_all", None) or [None]
        base = kernel.fn if configs != [None] else kernel
        args = tuple(sorted((k, _describe(v)) for k, v in item.args.items()))
        for config in configs:
            meta = ((), item.args.get("num_warps", 4), item.args.get("num_stages", 3)) if config is None else (
                tuple(sorted(config.kwargs.items())), config.num_warps, config.num_stages)
            for target in targets:
                job = Job(base.__module__, base.__name__, args, meta, target)
                _, _, specialization, _ = _bind(base, job)
                key = (job.module, job.name, repr(specialization), meta, target.name)
                if key not in seen:
                    seen.add(key)
                    out.append(job)
    return out


def _bind(fn, job: Job):
    """(backend, bound args, specialisation, parsed options) as JITFunction.run computes them."""
    from triton.compiler.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    constexprs, num_warps, num_stages = job.config
    kwargs = {k: _materialise(v) for k, v in job.args}
    kwargs.update(dict(constexprs))
    kwargs.pop("num_warps", None), kwargs.pop("num_stages", None)
    backend = make_backend(GPUTarget("cuda", job.target.capability, 32))
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, parsed = binder(**kwargs, num_warps=num_warps, num_stages=num_stages)
    return backend, bound, specialization, parsed


def compile_all(job_list: list[Job], workers: int = 2) -> list[Compiled]:
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(compile_job, job_list, chunksize=4))


def compile_job(job: Job) -> Compiled:
    import importlib

    from triton.compiler import ASTSource

    fn = getattr(importlib.import_module(job.module), job.name)
    fn = fn.fn if hasattr(fn, "configs_all") else fn  # an autotuned kernel: its JITFunction
    _, num_warps, num_stages = job.config
    backend, bound, specialization, parsed = _bind(fn, job)
    options = {"num_warps": num_warps, "num_stages": num_stages}
    parsed, signature, constants, attrs = fn._pack_args(backend, options, bound, specialization, parsed)
    dtypes = {name: kind.removeprefix("*") for name, kind in signature.items() if kind.startswith("*")}
    consts = {fn.arg_names[k[0]]: v for k, v in constants.items()
              if signature.get(fn.arg_names[k[0]]) == "constexpr" and isinstance(v, (bool, int, str))}
    divisible = [fn.arg_names[k[0]] for k, v in attrs.items() if v and signature[fn.arg_names[k[0]]] in ("i32", "i64")]
    label = " ".join([",".join(f"{k}:{v}" for k, v in dtypes.items() if v not in ("i32", "i64")),
                      *(f"{k}={v}" for k, v in sorted(consts.items())), f"warps={num_warps}", f"stages={num_stages}",
                      f"div16={','.join(divisible) or '-'}"])
    row = Compiled(fn.__name__, label, job.target.name, sorted(set(dtypes.values())), consts, num_warps, num_stages)
    try:
        compiled = triton.compile(ASTSource(fn, signature, constants, attrs), target=GPUTarget(
            "cuda", job.target.capability, 32), options=parsed.__dict__)
    except Exception as error:  # noqa: BLE001 - a compile error is the result being recorded
        row.error = f"{type(error).__name__}: {error}"
        return row
    row.shared_bytes = compiled.metadata.shared
    row.registers, row.spill_stores, row.spill_loads, row.stack_bytes = ptxas_usage(
        compiled.asm["ptx"], job.target.capability, parsed.enable_fp_fusion)
    return row


def ptxas_usage(ptx: str, capability: int, fp_fusion: bool) -> tuple[int, int, int, int]:
    """(registers, spill stores, spill loads, stack frame) from `ptxas -v`, run as Triton runs it
    (its binary and flags: the cubin Triton loads is this compile's output)."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        cmd = [get_ptxas(capability).path, "-lineinfo", *([] if fp_fusion else ["--fmad=false"]), "-v",
               "--regAllocOptLevel=2", f"--gpu-name={sm_arch_from_capability(capability)}", src,
               "-o", os.path.join(tmp, "kernel.cubin")]
        log = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    registers = int(re.search(r"Used (\d+) registers", log).group(1))
    stack, stores, loads = (int(x) for x in re.search(
        r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log).groups())
    return registers, stores, loads, stack


def as_json(rows: list[Compiled]) -> list[dict]:
    """Rows sorted (kernel, specialisation, target), each with its `problems` on its target."""
    targets = {t.name: t for t in TARGETS}
    return [{**asdict(r), "problems": r.problems(targets[r.target])}
            for r in sorted(rows, key=lambda r: (r.kernel, r.specialization, r.target))]


# --- helpers
def _describe(value):
    if torch.is_tensor(value):
        return ("tensor", str(value.dtype).removeprefix("torch."), tuple(value.shape), tuple(value.stride()),
                value.storage_offset())
    return value


def _materialise(value):
    if isinstance(value, tuple) and value and value[0] == "tensor":
        _, dtype, shape, strides, offset = value
        size = offset + sum(max(n - 1, 0) * st for n, st in zip(shape, strides)) + 1
        return torch.empty(size, dtype=getattr(torch, dtype), device="meta").as_strided(shape, strides, offset)
    return value
