"""Running one training stage as processes: `python -m f2llm.train`, torchrun in a pod, a TrainJob's nodes.

Three ways a stage runs, one command line (`stage_args`):

- in-process (`run_stage(processes=1)`): kfp.local, a one-GPU pod;
- torchrun inside one pod (`run_stage(processes=N)`): `torchrun --standalone --nproc-per-node N`,
  a process a GPU, the summary read back from rank 0's `--summary` file;
- many nodes (`f2llm.train.trainjob`): a Kubeflow Trainer TrainJob runs `torchrun -m
  f2llm.train` on every node, its runtime giving torchrun the node count, rank and master
  address (PET_* variables). Nodes share no disk, so --init, --data, --out, --log-file and
  --summary may be store URIs: each node fetches the inputs once (the ranks of a node share one
  copy, under a file lock) and rank 0 publishes the model, the log and the summary.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from f2llm import storage
from f2llm.config import TrainConfig

INPUT_CACHE = Path(tempfile.gettempdir()) / "f2llm-inputs"  # one copy a node and launch, shared by its ranks


def stage_args(init: str, data: str, stage: int, cfg: TrainConfig, max_length: int, out: str, log: str,
               summary: str | None = None) -> list[str]:
    """The arguments of `python -m f2llm.train` (after the module name)."""
    args = ["--init", str(init), "--data", str(data), "--stage", str(stage), "--train-config", cfg.model_dump_json(),
            "--max-length", str(max_length), "--out", str(out), "--log-file", str(log)]
    return args + (["--summary", str(summary)] if summary else [])


def run_stage(init_dir, data_dir, stage: int, cfg: TrainConfig, max_length: int, out_dir, log_path,
              processes: int = 1) -> dict:
    """Train one stage on this machine: in this process, or as `processes` torchrun ranks (one a
    GPU; gloo on CPUs). -> the trainer's summary (rank 0's)."""
    from f2llm.train.trainer import train_stage

    if processes == 1:
        return train_stage(init_dir, data_dir, stage, cfg, max_length, out_dir, log_path)
    with tempfile.TemporaryDirectory(prefix="f2llm-launch-") as tmp:
        summary = Path(tmp) / "summary.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
                   "-m", "f2llm.train", *stage_args(init_dir, data_dir, stage, cfg, max_length, out_dir, log_path, summary)]
        done = subprocess.run(command)  # the ranks' output is the step's log
        if done.returncode != 0:
            raise RuntimeError(f"stage {stage}: torchrun with {processes} processes exited with {done.returncode} "
                               "(the failing rank's traceback is above)")
        return json.loads(summary.read_text())


def passes_stage(cfg: TrainConfig, stage: int, init_dir, out_dir, log_path) -> bool:
    """Sizes below 0.6B have no stage 1 (they start from a stage-1 model): the step hands its input
    on as its output with an empty log. -> whether it did."""
    if stage != 1 or cfg.stage1 is not None:
        return False
    shutil.copytree(init_dir, out_dir)
    Path(log_path).write_text("")
    return True


def _is_local(uri: str) -> bool:
    return storage.parse_uri(uri).scheme == "file"


def _launch_cache(cache: Path = INPUT_CACHE) -> Path:
    """This launch's download folder on this node: the ranks of one torchrun agent (their parent)
    share it; another launch, even of the same URIs, downloads afresh (the store may have changed)."""
    owner = os.getppid() if "LOCAL_RANK" in os.environ else os.getpid()
    return cache / f"launch-{owner}"


def fetch_once(uri: str, cache: Path) -> Path:
    """A local directory holding `uri`: the path itself when local, else one download a node
    (the first rank to take the lock downloads, the others find it complete)."""
    if _is_local(uri):
        return storage.local_dir(uri)
    root = cache / hashlib.sha256(uri.encode()).hexdigest()[:16]
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / ".complete").exists():
            storage.download_dir(uri, root / "files")
            (root / ".complete").touch()
    return root / "files"


def main(argv: list[str] | None = None) -> int:
    """`python -m f2llm.train`: one stage as its own process (what a training pod or a TrainJob node runs)."""
    import argparse

    from f2llm.train.trainer import train_stage

    parser = argparse.ArgumentParser(prog="python -m f2llm.train", description=main.__doc__)
    parser.add_argument("--init", required=True, help="model directory or store URI")
    parser.add_argument("--data", required=True, help="the prepare step's output: directory or store URI")
    parser.add_argument("--stage", type=int, choices=(1, 2), required=True)
    parser.add_argument("--train-config", required=True, help="TrainConfig as JSON")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--out", required=True, help="where the model goes: directory or store URI")
    parser.add_argument("--log-file", required=True, help="JSON lines, a line a step: path or store URI")
    parser.add_argument("--summary", help="rank 0 writes the summary JSON here (path or store URI)")
    args = parser.parse_args(argv)
    cfg = TrainConfig.model_validate_json(args.train_config)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    with tempfile.TemporaryDirectory(prefix="f2llm-train-") as tmp:
        out = args.out if _is_local(args.out) else Path(tmp) / "model"
        log = args.log_file if _is_local(args.log_file) else Path(tmp) / "log.jsonl"
        if log != args.log_file and storage.exists(args.log_file):  # a resumed node keeps the steps logged so far
            Path(log).write_bytes(storage.read_bytes(args.log_file))
        cache = _launch_cache()
        init, data = fetch_once(args.init, cache), fetch_once(args.data, cache)
        summary = train_stage(init, data, args.stage, cfg, args.max_length, out, log)  # ends with a barrier
        if os.environ.get("LOCAL_RANK", "0") == "0":  # every rank of the node is past reading its inputs
            shutil.rmtree(cache, ignore_errors=True)
        if main_rank:
            if out != args.out:
                storage.upload_dir(out, args.out)
            if log != args.log_file:
                storage.write_bytes(args.log_file, Path(log).read_bytes())
            text = json.dumps(summary)
            if args.summary:
                storage.write_text(args.summary, text)
            print(text)
    return 0
