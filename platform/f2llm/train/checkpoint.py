"""Training checkpoints in the store (file:// or s3://), written so a reader never sees half of one.

Layout under a checkpoint URI:

    step-00000010/model/         save_pretrained: weights (safetensors) and tokenizer
    step-00000010/trainer.pt     optimizer, scheduler, torch RNG (tensors and numbers only:
                                 loaded back with weights_only=True, no pickled code)
    step-00000010/state.json     step, epoch, batch position, Python RNG state
    latest                       "step-00000010", written last: the commit point

With `train.strategy: fsdp` a checkpoint is sharded (`save_sharded`): instead of model/ and the
optimizer in trainer.pt, dcp/ holds every rank's shards of the model and AdamW state written by
torch.distributed.checkpoint (each rank uploads its own files: nodes share no disk), and a run
may resume at another world size: DCP reads whatever slices the new sharding needs.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from f2llm import storage


def _write_trainer_state(root: Path, optimizer, scheduler, state: dict) -> None:
    """trainer.pt (the optimizer unless it is sharded elsewhere, the scheduler, the torch RNG) and
    state.json into `root`."""
    saved = {"scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()}
    if optimizer is not None:
        saved["optimizer"] = optimizer.state_dict()
    torch.save(saved, root / "trainer.pt")
    (root / "state.json").write_text(json.dumps(state))


def save(uri: str, step: int, encoder, optimizer, scheduler, state: dict) -> str:
    name = f"step-{step:08d}"
    with tempfile.TemporaryDirectory(prefix="f2llm-ckpt-") as tmp:
        root = Path(tmp)
        encoder.model.save_pretrained(root / "model")
        encoder.tokenizer.save_pretrained(root / "model")
        _write_trainer_state(root, optimizer, scheduler, state)
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
    """The scheduler, torch RNG and position (and the optimizer, where trainer.pt holds it)."""
    saved = torch.load(path / "trainer.pt", weights_only=True)
    if "optimizer" in saved:
        optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    return json.loads((path / "state.json").read_text())


def save_sharded(uri: str, step: int, model, optimizer, scheduler, state: dict, rank: int) -> str:
    """Every rank calls this (collectives). Shards first, then rank 0's trainer state, then the
    `latest` pointer once every rank's upload is done."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    from f2llm.train.distributed import barrier

    name = f"step-{step:08d}"
    model_state, optim_state = get_state_dict(model, optimizer)
    with tempfile.TemporaryDirectory(prefix=f"f2llm-dcp-{rank}-") as tmp:
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=tmp)
        for turn in (0, 1):  # rank 0 first: it creates the bucket and writes the metadata
            if (rank == 0) == (turn == 0):
                storage.upload_dir(tmp, storage.join(uri, name, "dcp"))
            barrier()
    if rank == 0:
        with tempfile.TemporaryDirectory(prefix="f2llm-ckpt-") as tmp:
            _write_trainer_state(Path(tmp), None, scheduler, state)  # the optimizer is in dcp/
            storage.upload_dir(tmp, storage.join(uri, name))
        storage.write_text(storage.join(uri, "latest"), name)
    barrier()
    return name


def load_sharded(path: Path, model, optimizer, scheduler) -> dict:
    """Model and AdamW state from dcp/ into this run's sharding (any world size), then the rest."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    loaded = {"model": model_state, "optim": optim_state}
    dcp.load(loaded, checkpoint_id=str(path / "dcp"))
    set_state_dict(model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"])
    return load_trainer_state(path, optimizer, scheduler)
