"""Shared fixtures: a real S3 server on loopback (moto), the bundled sample, a tiny model."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


# Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors. It is chosen when
# a kernel is defined (import time), so it is set before any test imports f2llm.kernels.
if not _has_gpu():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def kill_process_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants at once, as a pod's eviction does (torchrun starts
    each rank in a session of its own, so killing its process group would leave the ranks running)."""
    import contextlib

    import psutil

    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_app(app, port: int):
    """An ASGI app (the fakes of APIs no test can run) on 127.0.0.1:port in a daemon thread; set
    `should_exit` on the returned uvicorn.Server to stop it."""
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1, with the environment our storage layer reads."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "F2LLM_S3_ENDPOINT": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env["F2LLM_S3_ENDPOINT"]
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture(scope="session")
def sample_rows() -> pd.DataFrame:
    from f2llm.data.ingest import ingest

    return ingest(str(SAMPLE))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, sample_rows) -> Path:
    from f2llm.model.base_model import build_tiny_model
    from f2llm.config import TinyModelConfig

    out = tmp_path_factory.mktemp("tiny")
    texts = pd.concat([sample_rows["query"], sample_rows["passage"]]).tolist()
    return build_tiny_model(TinyModelConfig(), texts, out)


@pytest.fixture(scope="session")
def exported_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model exported as the pipeline exports: a sentence-transformers directory."""
    from f2llm.model.export import export_sentence_transformers

    return export_sentence_transformers(tiny_model_dir, tmp_path_factory.mktemp("exported") / "model", 128)
