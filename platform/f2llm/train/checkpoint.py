"""Training checkpoints in the store (file:// or s3://), written so a reader never sees half of one.

Layout under a checkpoint URI:

    step-00000010/model/         save_pretrained: weights (safetensors) and tokenizer
    step-00000010/trainer.pt     optimizer, scheduler, torch RNG (tensors and numbers only:
                                 loaded back with weights_only=True, no pickled code)
    step-00000010/state.json     step, epoch, batch position, Python RNG state
    latest                       "step-00000010", written last: the commit point
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from f2llm import storage


def save(uri: str, step: int, encoder, optimizer, scheduler, state: dict) -> str:
    name = f"step-{step:08d}"
    with tempfile.TemporaryDirectory(prefix="f2llm-ckpt-") as tmp:
        root = Path(tmp)
        encoder.model.save_pretrained(root / "model")
        encoder.tokenizer.save_pretrained(root / "model")
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()},
            root / "trainer.pt",
        )
        (root / "state.json").write_text(json.dumps(state))
        storage.upload_dir(root, storage.join(uri, name))
    storage.write_text(storage.join(uri, "latest"), name)
    return name


def latest(uri: str, cache_dir: str | Path) -> Path | None:
    """Local directory of the newest committed checkpoint, or None when there is none."""
    pointer = storage.join(uri, "latest")
    if not storage.exists(pointer):
        return None
    name = storage.read_text(pointer).strip()
    return storage.download_dir(storage.join(uri, name), Path(cache_dir) / name)


def load_trainer_state(path: Path, optimizer, scheduler) -> dict:
    saved = torch.load(path / "trainer.pt", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    return json.loads((path / "state.json").read_text())
