"""A trainer killed with SIGKILL mid-run resumes from its last checkpoint to the same weights."""

import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
from safetensors.torch import load_file
from transformers import AutoTokenizer

from f2llm import storage
from f2llm.config import DataConfig, StageConfig, TrainConfig
from f2llm.data.prepare import prepare

from conftest import kill_process_tree
from tolerance import assert_close_scaled, assert_same_training


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, ranks: int = 1):
    """`python -m f2llm.train`, or torchrun with `ranks` processes."""
    launch = ["-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_addr", "127.0.0.1",
              "--master_port", str(_port())] if ranks > 1 else []
    return subprocess.Popen([sys.executable, *launch, "-m", "f2llm.train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("strategy,ranks", [("ddp", 1), ("fsdp", 2)])
def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path, sample_rows, tiny_model_dir, s3_endpoint,
                                                            strategy, ranks):
    """SIGKILL of the whole run (every process of it) after a checkpoint past
    the first; the same command again resumes to the weights and log of a run never killed. FSDP's
    checkpoints are sharded (each rank uploads its own), DDP's whole."""
    rows = sample_rows[sample_rows["language"].isin(["swa", "khm", "que", "eng"])]
    prepare(rows, AutoTokenizer.from_pretrained(tiny_model_dir), DataConfig(uri="unused"), 64, tmp_path / "data")

    def args(name: str, ckpt: str | None) -> list[str]:
        cfg = TrainConfig(stage1=None, stage2=StageConfig(epochs=3, lr=1e-3, batch_size=8, warmup_ratio=0.1),
                          checkpoint_uri=ckpt, checkpoint_every=5 if ckpt else 0, strategy=strategy)
        return ["--init", str(tiny_model_dir), "--data", str(tmp_path / "data"), "--stage", "2",
                "--train-config", cfg.model_dump_json(), "--max-length", "64",
                "--out", str(tmp_path / name / "model"), "--log-file", str(tmp_path / name / "log.jsonl")]

    assert _run(args("straight", None), ranks).wait(timeout=300) == 0

    ckpt = f"s3://f2llm-ckpt/{strategy}-run"
    victim = _run(args("killed", ckpt), ranks)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for a checkpoint past the first, then kill mid-run
        if storage.exists(f"{ckpt}/latest") and storage.read_text(f"{ckpt}/latest") >= "step-00000010":
            break
        time.sleep(0.2)
    kill_process_tree(victim.pid)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    assert not (tmp_path / "killed" / "model").exists()

    assert _run(args("killed", ckpt), ranks).wait(timeout=300) == 0
    straight = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    resumed = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert_close_scaled(resumed[name], straight[name], rel=1e-5, msg=name)  # the same computation replayed
    straight_log = pd.read_json(tmp_path / "straight" / "log.jsonl", lines=True)
    resumed_log = pd.read_json(tmp_path / "killed" / "log.jsonl", lines=True)
    assert resumed_log["step"].tolist() == straight_log["step"].tolist()  # each step logged once
    pd.testing.assert_series_equal(resumed_log["loss"], straight_log["loss"], rtol=1e-4)


@pytest.mark.parametrize("write_ranks,resume_ranks", [(2, 1), (1, 2)])
def test_sharded_checkpoint_resumes_at_another_world_size(tmp_path, sample_rows, tiny_model_dir, write_ranks,
                                                         resume_ranks):
    """FSDP checkpoints (torch.distributed.checkpoint shards) written at one world size resume at
    another: the run is rewound to its step-5 checkpoint (the `latest` pointer is the commit point,
    as after a kill) and finished at the other size, giving the uninterrupted run's weights."""
    rows = sample_rows[sample_rows["language"].isin(["swa", "jpn", "amh"])]
    prepare(rows, AutoTokenizer.from_pretrained(tiny_model_dir), DataConfig(uri="unused"), 64, tmp_path / "data")
    ckpt = f"file://{tmp_path}/ckpt"
    cfg = TrainConfig(stage1=None, stage2=StageConfig(epochs=2, lr=1e-3, batch_size=7, warmup_ratio=0.1),
                      strategy="fsdp", checkpoint_uri=ckpt, checkpoint_every=5)

    def train(name: str, ranks: int) -> None:
        args = ["-m", "f2llm.train", "--init", str(tiny_model_dir), "--data", str(tmp_path / "data"), "--stage", "2",
                "--train-config", cfg.model_dump_json(), "--max-length", "64",
                "--out", str(tmp_path / name / "model"), "--log-file", str(tmp_path / name / "log.jsonl")]
        launch = ["-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_addr", "127.0.0.1",
                  "--master_port", str(_port())] if ranks > 1 else []
        done = subprocess.run([sys.executable, *launch, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
        assert done.returncode == 0, done.stderr.decode()[-3000:]

    train("whole", write_ranks)
    assert storage.read_text(f"{ckpt}/latest") > "step-00000005"
    storage.write_text(f"{ckpt}/latest", "step-00000005")  # as if killed after the step-5 checkpoint
    train("resumed", resume_ranks)
    whole = pd.read_json(tmp_path / "whole" / "log.jsonl", lines=True)
    resumed = pd.read_json(tmp_path / "resumed" / "log.jsonl", lines=True)
    assert resumed["step"].tolist() == whole["step"].tolist()[5:]  # steps 6.. replayed, none lost
    assert_same_training(load_file(tmp_path / "resumed" / "model" / "model.safetensors"),
                         load_file(tmp_path / "whole" / "model" / "model.safetensors"),
                         lr=cfg.stage2.lr, steps=len(whole))
