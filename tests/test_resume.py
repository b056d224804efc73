"""A trainer killed with SIGKILL mid-run resumes from its last checkpoint to the same weights."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
from safetensors.torch import load_file
from transformers import AutoTokenizer

from f2llm import storage
from f2llm.config import DataConfig, StageConfig, TrainConfig
from f2llm.data.prepare import prepare

from tolerance import assert_close_scaled


def _run(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "f2llm.train", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path, sample_rows, tiny_model_dir, s3_endpoint):
    rows = sample_rows[sample_rows["language"].isin(["swa", "khm", "que", "eng"])]
    prepare(rows, AutoTokenizer.from_pretrained(tiny_model_dir), DataConfig(uri="unused"), 64, tmp_path / "data")

    def args(name: str, ckpt: str | None) -> list[str]:
        cfg = TrainConfig(stage1=None, stage2=StageConfig(epochs=3, lr=1e-3, batch_size=8, warmup_ratio=0.1),
                          checkpoint_uri=ckpt, checkpoint_every=5 if ckpt else 0)
        return ["--init", str(tiny_model_dir), "--data", str(tmp_path / "data"), "--stage", "2",
                "--train-config", cfg.model_dump_json(), "--max-length", "64",
                "--out", str(tmp_path / name / "model"), "--log-file", str(tmp_path / name / "log.jsonl")]

    assert _run(args("straight", None)).wait(timeout=300) == 0

    ckpt = "s3://f2llm-ckpt/run-1"
    victim = _run(args("killed", ckpt))
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for a checkpoint past the first, then kill mid-run
        if storage.exists(f"{ckpt}/latest") and storage.read_text(f"{ckpt}/latest") >= "step-00000010":
            break
        time.sleep(0.2)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    assert not (tmp_path / "killed" / "model").exists()

    assert _run(args("killed", ckpt)).wait(timeout=300) == 0
    straight = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    resumed = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert_close_scaled(resumed[name], straight[name], rel=1e-5, msg=name)  # the same computation replayed
    straight_log = pd.read_json(tmp_path / "straight" / "log.jsonl", lines=True)
    resumed_log = pd.read_json(tmp_path / "killed" / "log.jsonl", lines=True)
    assert resumed_log["step"].tolist() == straight_log["step"].tolist()  # each step logged once
    pd.testing.assert_series_equal(resumed_log["loss"], straight_log["loss"], rtol=1e-4)
