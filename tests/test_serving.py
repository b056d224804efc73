"""`f2llm serve` as a real KServe server on a loopback port: v1, v2, OpenAI (with the OpenAI
client), health and metrics, every error class, and dynamic batching; vectors checked against
sentence-transformers loading the same export (an independent peer)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import torch
import yaml
from openai import BadRequestError, NotFoundError, OpenAI

from f2llm.config import ServeConfig
from f2llm.serve.predictor import EmbedCall, EmbeddingPredictor
from f2llm.model.tokenizer import InputTooLong

from conftest import free_port

TEXTS = ["Habari ya asubuhi", "Где находится музей?", "東京は日本の首都です。", "ሰላም ለሁሉም", "Hello there"]
LIMITS = {"max_batch_size": 8, "max_wait_ms": 20, "max_input_tokens": 96, "on_too_long": "reject",
          "max_inputs": 16, "max_request_bytes": 65536}


def start_server(model_dir, port: int, config_path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "f2llm.cli", "serve", "--model", str(model_dir), "--name", "tiny", "--port", str(port),
         "--config", str(config_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-3000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise TimeoutError("server not ready in 120 s")


@pytest.fixture(scope="module")
def server(exported_model_dir, tmp_path_factory):
    config = tmp_path_factory.mktemp("serve") / "serve.yaml"
    config.write_text(yaml.safe_dump(LIMITS))
    port = free_port()
    proc = start_server(exported_model_dir, port, config)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def peer(exported_model_dir):
    """sentence-transformers reading the export: what a user of the directory would get."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(exported_model_dir), device="cpu")


def renormalised(vectors: np.ndarray, dim: int) -> np.ndarray:
    prefix = vectors[:, :dim]
    return prefix / np.linalg.norm(prefix, axis=1, keepdims=True)


def test_v1_and_v2_match_the_peer(server, peer):
    want = peer.encode(TEXTS, convert_to_numpy=True)
    v1 = httpx.post(f"{server}/v1/models/tiny:predict", json={"instances": TEXTS}).json()
    np.testing.assert_allclose(np.array(v1["predictions"]), want, rtol=1e-4, atol=1e-5)
    body = {"id": "req-7", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}],
            "parameters": {"dimensions": 16, "input_type": "query"}}
    v2 = httpx.post(f"{server}/v2/models/tiny/infer", json=body).json()
    out = v2["outputs"][0]
    assert v2["id"] == "req-7" and out["datatype"] == "FP32" and out["shape"] == [len(TEXTS), 16]
    queries = peer.encode(TEXTS, prompt_name="query", convert_to_numpy=True)
    np.testing.assert_allclose(np.array(out["data"]).reshape(len(TEXTS), 16), renormalised(queries, 16), rtol=1e-4, atol=1e-5)


def test_openai_client_unchanged(server, peer, exported_model_dir):
    client = OpenAI(base_url=f"{server}/openai/v1", api_key="not-needed")
    docs = peer.encode(TEXTS, convert_to_numpy=True)
    for dim in (64, 32, 16, 8):  # the client asks for base64 by default and decodes it
        got = client.embeddings.create(model="tiny", input=TEXTS, dimensions=dim)
        np.testing.assert_allclose(np.array([d.embedding for d in got.data]), renormalised(docs, dim), rtol=1e-4, atol=1e-5)
    floats = client.embeddings.create(model="tiny", input=TEXTS[0], encoding_format="float",
                                      extra_body={"input_type": "query"})
    query = peer.encode([TEXTS[0]], prompt_name="query", convert_to_numpy=True)[0]
    np.testing.assert_allclose(floats.data[0].embedding, query, rtol=1e-4, atol=1e-5)
    tokenizer = peer.tokenizer
    expected_tokens = len(tokenizer(peer.prompts["query"] + TEXTS[0])["input_ids"])  # EOS appended by the export
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == expected_tokens
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_health_readiness_and_metrics(server):
    assert httpx.get(f"{server}/v2/health/live").status_code == 200
    assert httpx.get(f"{server}/v1/models/tiny").json()["ready"] is True
    httpx.post(f"{server}/openai/v1/embeddings", json={"input": "x", "model": "tiny"})
    metrics = httpx.get(f"{server}/metrics").text
    assert 'f2llm_http_responses_total{code="200",protocol="openai"}' in metrics
    assert "request_predict_seconds" in metrics and "f2llm_batch_inputs_count" in metrics


BAD = [  # (method, path, body as bytes or JSON, expected status, a word of the message)
    ("openai", b'{"input": "x",', 400, "JSON"),
    ("openai", b'{"input": "\xff\xfe"}', 400, "UTF-8"),
    ("openai", {"input": 5}, 400, "input"),
    ("openai", {"input": ["a", 3]}, 400, "input"),
    ("openai", {"input": []}, 400, "empty"),
    ("openai", {"input": ""}, 400, "empty"),
    ("openai", {"input": ["a"] * 17}, 400, "at most 16"),
    ("openai", {"input": "a", "dimensions": 12}, 400, "[64, 32, 16, 8]"),
    ("openai", {"input": "a", "dimensions": "8"}, 400, "dimensions"),
    ("openai", {"input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
    ("openai", {"input": "a", "input_type": "passage"}, 400, "input_type"),
    ("openai", {"input": "a", "model": "gpt-4"}, 404, "not served"),
    ("openai", {"input": "word " * 200}, 413, "limit is 96"),
    ("openai", {"input": "a" * 70000}, 413, "bytes"),
    ("v1", b'{"instances": ["a"', 400, ""),
    ("v1", {"instances": "a"}, 400, "instances"),
    ("v1", {"instances": [1, 2]}, 400, "not a string"),
    ("v1", {"instances": ["word " * 200]}, 413, "limit is 96"),
    ("v2", {"inputs": [{"name": "t", "datatype": "FP32", "shape": [1], "data": [1.0]}]}, 400, "BYTES"),
]


@pytest.mark.parametrize("route,body,status,word", BAD)
def test_bad_requests_get_4xx_and_the_server_keeps_serving(server, route, body, status, word):
    path = {"openai": "/openai/v1/embeddings", "v1": "/v1/models/tiny:predict", "v2": "/v2/models/tiny/infer"}[route]
    content = body if isinstance(body, bytes) else None
    response = httpx.post(f"{server}{path}", content=content, json=None if content else body,
                          headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert word in response.text
    assert httpx.post(f"{server}/openai/v1/embeddings", json={"input": "still here"}).status_code == 200


def test_streamed_body_over_the_limit_gets_413(server):
    def chunks():  # no Content-Length: the limit is counted while the body arrives
        yield b'{"input": "'
        for _ in range(70):
            yield b"a" * 1000
        yield b'"}'

    for path in ("/openai/v1/embeddings", "/v1/models/tiny:predict"):
        response = httpx.post(f"{server}{path}", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in response.request.headers
        assert response.status_code == 413 and "bytes" in response.text
    assert httpx.post(f"{server}/openai/v1/embeddings", json={"input": "still here"}).status_code == 200


def test_openai_client_sees_the_errors(server):
    client = OpenAI(base_url=f"{server}/openai/v1", api_key="not-needed", max_retries=0)
    with pytest.raises(BadRequestError, match="supported"):
        client.embeddings.create(model="tiny", input="a", dimensions=100)
    with pytest.raises(NotFoundError):
        client.embeddings.create(model="other", input="a")


def test_concurrent_requests_share_forward_passes(server):
    before = _batch_count(server)

    async def fire():
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            return await asyncio.gather(*(
                client.post("/openai/v1/embeddings", json={"input": text, "encoding_format": "float"})
                for text in TEXTS * 6
            ))

    responses = asyncio.run(fire())
    assert all(r.status_code == 200 for r in responses)
    passes = _batch_count(server) - before
    assert passes < len(responses)  # 30 single-input requests, fewer forward passes
    alone = httpx.post(f"{server}/openai/v1/embeddings", json={"input": TEXTS[2], "encoding_format": "float"}).json()
    batched = responses[2].json()  # TEXTS[2], computed inside a batch with others
    np.testing.assert_allclose(batched["data"][0]["embedding"], alone["data"][0]["embedding"], rtol=1e-4, atol=1e-5)


def _batch_count(server: str) -> float:
    for line in httpx.get(f"{server}/metrics").text.splitlines():
        if line.startswith("f2llm_batch_inputs_count"):
            return float(line.split()[-1])
    return 0.0


def test_truncation_keeps_eos_last(exported_model_dir):
    predictor = EmbeddingPredictor(ServeConfig(model=str(exported_model_dir), max_input_tokens=8))
    predictor.load()
    long_text = "word " * 50
    result = asyncio.run(predictor.embed(EmbedCall([long_text])))
    assert result.tokens == 8
    ids = predictor.exported.encoder.tokenize([long_text])[0]
    assert len(ids) == 8 and ids[-1] == predictor.exported.encoder.tokenizer.eos_token_id
    want = torch.nn.functional.normalize(predictor._forward([ids]), dim=-1).numpy()
    np.testing.assert_allclose(result.vectors, want, rtol=1e-5, atol=1e-6)
    strict = EmbeddingPredictor(ServeConfig(model=str(exported_model_dir), max_input_tokens=8, on_too_long="reject"))
    strict.load()
    with pytest.raises(InputTooLong, match="input 1 has"):
        asyncio.run(strict.embed(EmbedCall(["short", long_text])))
