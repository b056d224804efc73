"""`f2llm serve` as a hostile client meets it: a real server process on a loopback port, with the
shipped limits (8 MiB bodies, 8,192 tokens per input) and short read timeouts.

Each finding of the serving review has its test here: model control open to anyone (1),
maximum-size inputs tokenised whole (2), work done for clients that hung up (3), 500s for bad
JSON or parameters (4), keep-alive connections dropped after an error (5), token-id inputs and
content types (6), hang-ups logged as errors, uncounted statuses, unchecked v2 shapes, no read
timeouts and no `--host` (7). Raw sockets play the clients no HTTP library would be.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import psutil
import pytest
import yaml

from conftest import free_port, serve_app
from f2llm.config import ServeConfig
from f2llm.model.tokenizer import encode_limited, longest_token_chars

HEAD_TIMEOUT_S, BODY_TIMEOUT_S = 2.0, 3.0
OPENAI, V1, V2 = "/openai/v1/embeddings", "/v1/models/tiny:predict", "/v2/models/tiny/infer"
MAX_BODY_TEXT = "word " * (7_400_000 // 5)  # 7.4 MB of text, under the 8 MiB body limit
LEAKS = ("Traceback", "TypeError", "ValueError", "RecursionError", "KeyError", "AttributeError", "Exception")


@pytest.fixture(scope="module")
def server(exported_model_dir, tmp_path_factory):
    """-> (base URL, process, log path): the shipped defaults but for short timeouts; no --host."""
    work = tmp_path_factory.mktemp("hostile")
    (work / "serve.yaml").write_text(yaml.safe_dump({"header_timeout_s": HEAD_TIMEOUT_S, "body_timeout_s": BODY_TIMEOUT_S}))
    port, log = free_port(), work / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "f2llm.cli", "serve", "--model", str(exported_model_dir),
                                 "--name", "tiny", "--port", str(port), "--config", str(work / "serve.yaml")],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    yield url, proc, log
    proc.terminate()
    proc.wait(timeout=30)


def raw_request(method: str, path: str, body: bytes = b"", content_type: str | None = "application/json",
                extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\ncontent-length: {len(body)}\r\n{extra}"
    head += f"content-type: {content_type}\r\n" if content_type else ""
    return (head + "\r\n").encode() + body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length, read off a keep-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(rest) < int(headers["content-length"]):
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), headers, rest


def metric(url: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + ("{" + want + "}" if labels else " ")):
            return float(line.split()[-1])
    return 0.0


def closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it stayed open."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:  # closed with our bytes unread
        pass
    return received


# --- 1: model control
def test_model_control_routes_do_not_exist_by_default(server):
    url, _, _ = server
    for action in ("unload", "load"):
        assert httpx.post(f"{url}/v2/repository/models/tiny/{action}").status_code == 404
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    assert httpx.post(f"{url}{OPENAI}", json={"input": "still served"}).status_code == 200


def test_model_control_needs_the_token_and_readiness_follows_the_model(exported_model_dir, monkeypatch):
    from f2llm.serve.server import OneModel, build_app

    cfg = ServeConfig(model=str(exported_model_dir), name="tiny", model_control=True)
    monkeypatch.delenv("F2LLM_CONTROL_TOKEN", raising=False)
    with pytest.raises(SystemExit, match="F2LLM_CONTROL_TOKEN"):
        build_app(cfg, OneModel(cfg))
    monkeypatch.setenv("F2LLM_CONTROL_TOKEN", "s3cret-token-of-some-length")
    repository = OneModel(cfg)
    repository.load("tiny")
    app = build_app(cfg, repository)
    owner = {"authorization": "Bearer s3cret-token-of-some-length"}

    async def session():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            before = (await c.post(OPENAI, json={"input": "Habari", "encoding_format": "float"})).json()
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret-token-of-some-length"}):
                refused = await c.post("/v2/repository/models/tiny/unload", headers=headers)
                assert refused.status_code == 401 and refused.json() == {"error": "model control needs the bearer token"}
            assert (await c.post("/v2/repository/models/other/unload", headers=owner)).status_code == 404
            assert (await c.post("/v2/repository/models/tiny/unload", headers=owner)).status_code == 200
            assert (await c.get("/v2/health/ready")).status_code == 503  # the readiness probe sees it
            assert (await c.post(V1, json={"instances": ["a"]})).status_code == 404
            gone = await c.post(OPENAI, json={"input": "a"})
            assert gone.status_code == 503 and gone.json()["error"]["code"] == "model_not_loaded"
            assert (await c.post("/v2/repository/models/tiny/load", headers=owner)).status_code == 200
            assert (await c.get("/v2/health/ready")).status_code == 200
            after = (await c.post(OPENAI, json={"input": "Habari", "encoding_format": "float"})).json()
            np.testing.assert_allclose(after["data"][0]["embedding"], before["data"][0]["embedding"], rtol=1e-5, atol=1e-6)

    asyncio.run(session())


# --- 2: memory bounded before work
def test_four_maximum_size_inputs_at_once_stay_under_2_gb_and_good_requests_keep_their_latency(server):
    url, proc, _ = server
    with open(f"/proc/{proc.pid}/clear_refs", "w") as fh:  # reset the peak RSS (VmHWM) to now
        fh.write("5")
    body = json.dumps({"input": MAX_BODY_TEXT, "encoding_format": "float"}).encode()
    assert len(body) < 8 * 2**20
    huge, latencies, stop = [], [], threading.Event()

    def send_huge():
        huge.append(httpx.post(f"{url}{OPENAI}", content=body, headers={"content-type": "application/json"}, timeout=120))

    def good_requests():
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                assert client.post(OPENAI, json={"input": ["Где находится музей?", "Hello"]}).status_code == 200
                latencies.append(time.perf_counter() - started)

    steady = threading.Thread(target=good_requests)
    steady.start()
    for _ in range(2):  # two rounds of four at once
        senders = [threading.Thread(target=send_huge) for _ in range(4)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
    stop.set()
    steady.join()
    peak_mb = _peak_rss_mb(proc.pid)
    assert [r.status_code for r in huge] == [200] * 8
    assert all(r.json()["usage"]["prompt_tokens"] == 8192 for r in huge)  # truncated to max_input_tokens
    assert peak_mb < 2048, f"peak RSS {peak_mb:.0f} MB"
    assert len(latencies) >= 5 and np.percentile(latencies, 99) < 2.0, latencies


def _peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_truncation_tokenises_only_about_what_it_keeps(exported_model_dir, sample_rows):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported_model_dir)
    counted = CountingTokenizer(tokenizer)
    ids = encode_limited(counted, [MAX_BODY_TEXT], 8192, reject=False)[0]
    assert len(ids) == 8192 and ids[-1] == tokenizer.eos_token_id
    kept_chars = len(tokenizer.decode(ids[:-1]))
    assert counted.chars < 8 * kept_chars < len(MAX_BODY_TEXT) / 20
    # the same ids as tokenising the whole text and cutting (the EOS rule), in every language
    texts = sorted(set(sample_rows["passage"]))
    for start in range(0, 400, 20):
        text = "".join(texts[start : start + 40])
        whole = tokenizer(text, add_special_tokens=False)["input_ids"]
        for limit in (16, 64, 200):
            assert encode_limited(tokenizer, [text], limit, reject=False)[0] == whole[: limit - 1] + [tokenizer.eos_token_id]


def test_reject_refuses_text_that_cannot_fit_without_tokenising_it(exported_model_dir):
    from transformers import AutoTokenizer

    from f2llm.model.tokenizer import InputTooLong

    counted = CountingTokenizer(AutoTokenizer.from_pretrained(exported_model_dir))
    too_many_chars = "a" * (96 * longest_token_chars(counted.tokenizer) + 1)
    with pytest.raises(InputTooLong, match="input 1 has over 96 tokens"):
        encode_limited(counted, ["fine", too_many_chars], 96, reject=True)
    assert counted.chars == 0


class CountingTokenizer:
    """The real tokenizer, counting the characters it is asked to tokenise."""

    def __init__(self, tokenizer):
        self.tokenizer, self.chars = tokenizer, 0

    def __call__(self, texts, **kwargs):
        self.chars += sum(map(len, texts if isinstance(texts, list) else [texts]))
        return self.tokenizer(texts, **kwargs)

    def get_vocab(self):
        return self.tokenizer.get_vocab()

    @property
    def eos_token_id(self):
        return self.tokenizer.eos_token_id


def test_token_budgets_bound_each_forward_pass():
    import torch

    from f2llm.serve.batching import DynamicBatcher

    passes = []

    def run(ids):
        passes.append([len(row) for row in ids])
        return torch.tensor([[float(len(row)), float(row[0])] for row in ids])

    batcher = DynamicBatcher(run, max_batch_size=4, max_batch_tokens=100)
    ids = [[i] * n for i, n in enumerate([30, 5, 120, 30, 31, 2, 2, 2, 2, 2, 50])]
    rows = batcher._forward(ids)
    assert rows[:, 1].tolist() == list(range(len(ids)))  # every row back in place
    assert all(len(p) <= 4 and (len(p) * max(p) <= 100 or len(p) == 1) for p in passes), passes
    assert [120] in passes  # longer than the budget: alone


def test_a_full_queue_answers_503_with_retry_after(exported_model_dir):
    from f2llm.serve.server import OneModel, build_app

    cfg = ServeConfig(model=str(exported_model_dir), name="tiny", max_inflight_tokens=64, max_wait_ms=50)
    repository = OneModel(cfg)
    repository.load("tiny")
    app = build_app(cfg, repository)
    text = " ".join(["Habari ya asubuhi"] * 6)

    async def crowd():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            first = await asyncio.gather(*(c.post(OPENAI, json={"input": text}) for _ in range(8)))
            later = await c.post(OPENAI, json={"input": text})
            return first, later

    first, later = asyncio.run(crowd())
    codes = sorted(r.status_code for r in first)
    assert codes[0] == 200 and codes[-1] == 503, codes
    busy = next(r for r in first if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and busy.json()["error"]["code"] == "server_busy"
    assert later.status_code == 200  # the queue drained


# --- 3: nobody computes for a client that is gone
def test_requests_of_clients_that_hung_up_are_not_computed(server):
    url, _, _ = server
    inputs_before, gone_before = metric(url, "f2llm_batch_inputs_sum"), metric(url, "f2llm_http_responses_total", code="499", protocol="openai")
    dropped_before = metric(url, "f2llm_dropped_inputs_total")
    busy_body = json.dumps({"input": [MAX_BODY_TEXT[:60_000]] * 8}).encode()  # 8 x 8,192 tokens: seconds of work
    busy = threading.Thread(target=lambda: httpx.post(f"{url}{OPENAI}", content=busy_body,
                                                      headers={"content-type": "application/json"}, timeout=120))
    busy.start()
    deadline = time.time() + 30
    while metric(url, "f2llm_inflight_tokens") < 8 * 8192 and time.time() < deadline:
        time.sleep(0.05)  # until its forward passes are under way
    small = json.dumps({"input": [f"text number {i}" for i in range(8)]}).encode()
    queued = [socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) for _ in range(20)]
    waiting = metric(url, "f2llm_inflight_tokens")  # the busy request's
    for sock in queued:  # tokenised at once, then they wait behind the busy request
        sock.sendall(raw_request("POST", OPENAI, small))
    deadline = time.time() + 30
    while metric(url, "f2llm_inflight_tokens") < waiting + 20 * 8 * 2 and time.time() < deadline:
        time.sleep(0.05)  # every input is at least 2 tokens (text, EOS)
    assert busy.is_alive(), "the busy request ended before the queue filled: make it longer"
    for sock in queued:
        sock.close()
    abandoned = [socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) for _ in range(20)]
    big = json.dumps({"input": [MAX_BODY_TEXT[:530]] * 64}).encode()  # 34 KB each, closed at once
    for sock in abandoned:
        sock.sendall(raw_request("POST", OPENAI, big))
        sock.close()
    busy.join()
    assert httpx.post(f"{url}{OPENAI}", json={"input": "tiny"}).status_code == 200
    time.sleep(0.2)
    computed = metric(url, "f2llm_batch_inputs_sum") - inputs_before
    assert computed == 8 + 1, computed  # the busy request and the last one; none of the 40 abandoned
    assert metric(url, "f2llm_dropped_inputs_total") - dropped_before == 20 * 8  # taken off the queue
    assert metric(url, "f2llm_http_responses_total", code="499", protocol="openai") - gone_before == 40


# --- 4 and 5: bad input is a 4xx in the route's shape, and the connection stays usable
SURROGATE = b'"a\\ud800b"'
NESTED = b"[" * 1000 + b"]" * 1000
DIGITS = b"9" * 5000
BAD = [  # (path, raw JSON body, status, a word of the message)
    (OPENAI, b'{"input": ' + SURROGATE + b"}", 400, "JSON"),
    (V1, b'{"instances": [' + SURROGATE + b"]}", 400, "JSON"),
    (V2, b'{"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], "data": [' + SURROGATE + b"]}]}", 400, "JSON"),
    (OPENAI, b'{"input": ' + NESTED + b"}", 400, "JSON"),
    (V1, b'{"instances": ' + NESTED + b"}", 400, "JSON"),
    (V2, b'{"inputs": ' + NESTED + b"}", 400, "JSON"),
    (OPENAI, b'{"input": "a", "dimensions": ' + DIGITS + b"}", 400, "JSON"),
    (V1, b'{"instances": ["a"], "dimensions": ' + DIGITS + b"}", 400, "JSON"),
    (OPENAI, b'{"input": "a", "dimensions": 32.0}', 400, "dimensions"),
    (V1, b'{"instances": ["a"], "dimensions": 32.0}', 400, "dimensions"),
    (V1, b'{"instances": ["a"], "dimensions": true}', 400, "dimensions"),
    (V2, b'{"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], "data": ["a"]}], "parameters": {"dimensions": 32.0}}', 400, "dimensions"),
    (V2, b'{"inputs": [{"name": "t", "datatype": "BYTES", "shape": [3], "data": ["a"]}]}', 400, "shape"),
    (V2, b'{"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], "data": [5]}]}', 400, "not a string"),
    (V2, b"[]", 400, "body"),
    (V1, b"[]", 400, "instances"),
    (V1, b'{"instances": ["a"], "input_type": ["query"]}', 400, "input_type"),
    (OPENAI, b'{"input": null}', 400, "input must be"),
    (OPENAI, b'{"input": [1, "a"]}', 400, "input must be"),
    (OPENAI, b'{"input": [[]]}', 400, "empty list of token ids"),
    (OPENAI, b'{"input": [99999999]}', 400, "token id 99999999"),
    (OPENAI, b'{"input": [[5, -1]]}', 400, "token id -1"),
    (OPENAI, b'{"input": [5, 6], "input_type": "query"}', 400, "needs text input"),
    (OPENAI, b'{"input": "a", "dimensions": 1e308}', 400, "dimensions"),
    (OPENAI, b"", 400, "JSON"),
    (V1, b"", 400, "empty"),
    (V1, b'{"instances": ["a"], "x": ' + NESTED + b', "x": 1}', 400, "JSON"),  # a duplicate key hides nothing
    (OPENAI, b'{"input": [' + b"[1]," * 20_000 + b"[1]]}", 400, "arrays and objects"),
]


@pytest.mark.parametrize("path,body,status,word", BAD, ids=[f"{i}-{p.split('/')[1]}" for i, (p, *_) in enumerate(BAD)])
def test_bad_input_is_a_4xx_in_the_protocols_shape(server, path, body, status, word):
    url, _, _ = server
    response = httpx.post(f"{url}{path}", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    message = error["message"] if path == OPENAI else error
    if path == OPENAI:
        assert error["type"] == "invalid_request_error" and set(error) == {"message", "type", "param", "code"}
    assert word in message and not any(leak in message for leak in LEAKS), message


@pytest.mark.parametrize("headers", [{"content-type": "application/json; charset=utf-8"},  # KServe: raw bytes to v1
                                     {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "1"},
                                     {"content-type": "application/json", "inference-header-content-length": "2"}])
def test_kserve_body_forms_are_4xx_too(server, headers):
    url, _, _ = server
    body = b'{"instances": ["a"], "x": ' + NESTED + b', "x": 1}'
    for path in (V1, V2):
        response = httpx.post(f"{url}{path}", content=body, headers=headers)
        assert 400 <= response.status_code < 500 and not any(leak in response.text for leak in LEAKS), response.text
    if "charset" in headers["content-type"]:
        ok = httpx.post(f"{url}{V1}", content=b'{"instances": ["a"]}', headers=headers)
        assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1


def test_a_keep_alive_connection_survives_every_error(server):
    url, _, _ = server
    good = raw_request("POST", OPENAI, b'{"input": "good"}')
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
        for path, body, status, _ in BAD:
            sock.sendall(raw_request("POST", path, body))
            code, headers, _ = read_response(sock)
            assert code == status and headers.get("connection") != "close"
            sock.sendall(good)
            assert read_response(sock)[0] == 200


def test_an_unexpected_failure_is_a_bare_500_that_keeps_the_connection(caplog):
    from fastapi import FastAPI

    from f2llm.serve.guard import Guard

    app = FastAPI()

    @app.get("/boom")
    async def boom():
        raise TypeError("secret internal detail")

    @app.get("/ok")
    async def ok():
        return {"ok": True}

    app.add_middleware(Guard, max_bytes=1024, body_timeout_s=5)  # as build_app assembles it
    port = free_port()
    uv = serve_app(app, port)
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
            code, headers, body = read_response(sock)
            assert code == 500 and headers.get("connection") != "close"
            assert json.loads(body) == {"error": "internal server error"}
            sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock)[0] == 200
    finally:
        uv.should_exit = True
    assert sum("secret internal detail" in r.getMessage() or r.exc_info is not None for r in caplog.records) == 1


# --- 6: token ids and content types
def test_token_id_inputs_embed_as_their_text(server, exported_model_dir):
    from transformers import AutoTokenizer

    url, _, _ = server
    tokenizer = AutoTokenizer.from_pretrained(exported_model_dir)
    texts = ["Habari ya asubuhi", "東京は日本の首都です。"]
    ids = [tokenizer(t)["input_ids"] for t in texts]  # EOS appended, as a peer's tokenizer would
    by_text = httpx.post(f"{url}{OPENAI}", json={"input": texts, "encoding_format": "float"}).json()
    by_ids = httpx.post(f"{url}{OPENAI}", json={"input": ids, "encoding_format": "float"}).json()
    one = httpx.post(f"{url}{OPENAI}", json={"input": ids[1], "encoding_format": "float"}).json()
    want = np.array([d["embedding"] for d in by_text["data"]])
    np.testing.assert_allclose([d["embedding"] for d in by_ids["data"]], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one["data"][0]["embedding"], want[1], rtol=1e-5, atol=1e-6)
    assert by_ids["usage"]["prompt_tokens"] == by_text["usage"]["prompt_tokens"] == sum(map(len, ids))


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_bodies_must_be_declared_json(server, content_type):
    url, _, _ = server
    port = int(url.rsplit(":", 1)[1])
    for path in (OPENAI, V1):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(raw_request("POST", path, b'{"input": "a", "instances": ["a"]}', content_type))
            code, _, body = read_response(sock)
            assert code == 415 and b"application/json" in body


# --- 7: hang-ups, metrics, timeouts, host
def test_a_hang_up_mid_body_is_no_error(server):
    url, _, log = server
    before = log.read_text()
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(f"POST {OPENAI} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                     "content-length: 10000\r\n\r\n".encode() + b'{"input": "abc')  # 14 of 10,000 bytes
    time.sleep(0.5)
    new = log.read_text()[len(before):]
    assert "went away" in new and "ERROR" not in new and "Traceback" not in new
    assert httpx.post(f"{url}{OPENAI}", json={"input": "still here"}).status_code == 200


def test_metrics_count_every_status(server):
    url, _, _ = server
    before = {code: metric(url, "f2llm_http_responses_total", code=code, protocol="openai") for code in ("400", "413", "415")}
    v1_before = metric(url, "f2llm_http_responses_total", code="400", protocol="v1")
    httpx.post(f"{url}{OPENAI}", content=b"{", headers={"content-type": "application/json"})
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:  # declared, never sent
        sock.sendall(f"POST {OPENAI} HTTP/1.1\r\nHost: x\r\ncontent-length: {8 * 2**20 + 1}\r\n\r\n".encode())
        assert read_response(sock)[0] == 413
    httpx.post(f"{url}{OPENAI}", content=b"{}", headers={"content-type": "text/plain"})
    for code in before:
        assert metric(url, "f2llm_http_responses_total", code=code, protocol="openai") == before[code] + 1, code
    httpx.post(f"{url}{V1}", json={"instances": [1]})
    assert metric(url, "f2llm_http_responses_total", code="400", protocol="v1") == v1_before + 1


def test_a_slow_head_is_cut_off(server):
    url, _, _ = server
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"POST /openai/v1/embeddings HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        assert closed_within(sock, HEAD_TIMEOUT_S + 3) == b""
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:  # an idle connection too
        assert closed_within(sock, HEAD_TIMEOUT_S + 3) == b""


def test_a_lone_crlf_after_a_request_does_not_hold_the_connection(server):
    url, _, _ = server
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(raw_request("POST", OPENAI, b'{"input": "a"}'))
        assert read_response(sock)[0] == 200
        sock.sendall(b"\r\n")  # skipped by the parser, yet it cancels uvicorn's keep-alive timer
        assert closed_within(sock, HEAD_TIMEOUT_S + 3) == b""


def test_an_oversized_head_is_cut_off(server):
    url, _, _ = server
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(40):  # 40 x 4 KB headers, never the blank line
                sock.sendall(b"x-filler: " + b"y" * 4096 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_within(sock, 1.5) is not None  # well before the head deadline
    assert httpx.get(f"{url}/metrics").status_code == 200  # a normal head of a few KB is fine


def test_a_slow_body_gets_408_and_the_connection_closes(server):
    url, _, _ = server
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
        request = raw_request("POST", OPENAI, b'{"input": "' + b"a" * 90 + b'"}')
        sock.sendall(request[:-50])  # 50 bytes short, forever
        answer = closed_within(sock, BODY_TIMEOUT_S + 3)
    assert answer is not None and answer.startswith(b"HTTP/1.1 408") and b"connection: close" in answer.lower()
    assert b"did not arrive within 3 s" in answer


def test_it_listens_on_loopback_unless_told(server):
    _, proc, _ = server
    listening = [c.laddr for c in psutil.Process(proc.pid).connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening)


def test_the_log_holds_no_tracebacks(server):  # last: after every hostile request above
    _, _, log = server
    text = log.read_text()
    assert "Traceback" not in text and " ERROR " not in text, text[-3000:]
    assert os.path.getsize(log) < 200_000
