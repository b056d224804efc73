"""The KServe predictor of an exported F2LLM-v2 model: load, preprocess, predict, postprocess.

It serves what the export describes (`export.py`): the backbone and tokenizer at the directory's
root, the pooling mode in its Pooling module, the query prompt in
`config_sentence_transformers.json` and the Matryoshka dims in `config.json`. Protocol plumbing
(v1/v2 routes, health, metrics) is KServe's; the OpenAI route (`openai_api.py`) calls `embed`.

Request options, the same in every protocol:
- `input_type`: "document" (default, no prompt) or "query" (the model's query instruction);
- `dimensions`: a Matryoshka dim (prefix re-normalised); default the full size.

Inputs are texts, or (OpenAI route) token id lists used as given, as vLLM does: the ids of
`tokenizer(text)` embed exactly as the text. Limits hold before work: characters and tokens per
input (`encode_limited`), tokens per request (`max_request_tokens`: texts are tokenised in chunks
and refused as soon as the sum passes it), tokens in flight (`batching.py`).
"""

from __future__ import annotations

import asyncio
import json
import reprlib
import uuid
from dataclasses import dataclass

import numpy as np
import orjson
import torch
import torch.nn.functional as F
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from f2llm import storage
from f2llm.config import ServeConfig
from f2llm.model.encoder import Encoder
from f2llm.model.tokenizer import InputTooLong, encode_limited
from f2llm.serve.batching import DynamicBatcher

INPUT_TYPES = ("document", "query")
INLINE_CHARS = 16_384  # requests up to this many characters are tokenised on the event loop
TOKENIZE_CHUNK = 64  # texts per tokenizer call; the request's token sum is checked after each


class RequestTooLarge(ValueError):
    """A request's inputs sum to more than `max_request_tokens` (HTTP 413)."""


@dataclass(frozen=True)
class ExportedModel:
    """An exported model directory, read back: the encoder and what the export says about it."""

    encoder: Encoder
    prompts: dict[str, str]
    dims: list[int]

    @classmethod
    def load(cls, uri: str, max_length: int, device: str = "auto") -> "ExportedModel":
        path = storage.local_dir(uri)
        modules = json.loads((path / "modules.json").read_text())
        pooling_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        mode = _pooling_mode(json.loads((path / pooling_dir / "config.json").read_text()))
        st_config = path / "config_sentence_transformers.json"
        prompts = json.loads(st_config.read_text()).get("prompts", {}) if st_config.exists() else {}
        hidden = json.loads((path / "config.json").read_text())
        dims = sorted(hidden.get("matryoshka_dimensions") or [hidden["hidden_size"]], reverse=True)
        encoder = Encoder.load(path, max_length=max_length, pooling=mode)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        encoder.to(device).eval()
        return cls(encoder, {k: v for k, v in prompts.items() if v}, dims)


@dataclass(frozen=True)
class EmbedCall:
    texts: list[str]
    input_type: str = "document"
    dimensions: int | None = None
    v2_id: str | None = None  # set for an open-inference (v2) request
    token_ids: list[list[int]] | None = None  # instead of texts (then `texts` is empty)


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray  # [N, dim] float32, unit length
    tokens: int
    call: EmbedCall


class EmbeddingPredictor(Model):
    def __init__(self, cfg: ServeConfig):
        super().__init__(cfg.name)
        self.cfg = cfg
        self.exported: ExportedModel | None = None
        self.batcher: DynamicBatcher | None = None

    def load(self) -> bool:
        self.exported = ExportedModel.load(self.cfg.model, self.cfg.max_input_tokens, self.cfg.device)
        cfg = self.cfg
        self.batcher = DynamicBatcher(self._forward, cfg.max_batch_size, cfg.max_wait_ms, cfg.max_batch_tokens,
                                      cfg.max_inflight_tokens)
        self.ready = True
        return self.ready

    def stop(self) -> None:
        """Unloaded (model control): new requests get 503, queued ones finish, then nothing holds
        the weights any more; `load` builds a new predictor."""
        self.ready = False
        self.batcher.close()

    @property
    def dims(self) -> list[int]:
        return self.exported.dims

    @torch.inference_mode()
    def _forward(self, ids: list[list[int]]) -> torch.Tensor:
        return self.exported.encoder(ids).float().cpu()

    # --- the one embedding path of every protocol
    def check(self, call: EmbedCall) -> None:
        """Raise InvalidInput (HTTP 400) naming what is wrong with a request."""
        inputs = call.texts if call.token_ids is None else call.token_ids
        if not inputs:
            raise InvalidInput("input is empty: give at least one text")
        if len(inputs) > self.cfg.max_inputs:
            raise InvalidInput(f"{len(inputs)} inputs; at most {self.cfg.max_inputs} per request")
        if call.token_ids is None:
            for i, text in enumerate(call.texts):
                if not isinstance(text, str):
                    raise InvalidInput(f"input {i} is {type(text).__name__}, not a string")
                if not text:
                    raise InvalidInput(f"input {i} is an empty string")
        else:
            self._check_ids(call)
        if call.input_type not in INPUT_TYPES:
            raise InvalidInput(f"input_type {reprlib.repr(call.input_type)} is not one of {', '.join(INPUT_TYPES)}")
        if call.dimensions is not None and (type(call.dimensions) is not int or call.dimensions not in self.dims):
            raise InvalidInput(f"dimensions {reprlib.repr(call.dimensions)} is not supported; supported: {self.dims}")

    def _check_ids(self, call: EmbedCall) -> None:
        vocab = self.exported.encoder.model.get_input_embeddings().num_embeddings
        for i, row in enumerate(call.token_ids):
            if not row:
                raise InvalidInput(f"input {i} is an empty list of token ids")
            bad = next((t for t in row if type(t) is not int or not 0 <= t < vocab), None)
            if bad is not None:
                raise InvalidInput(f"input {i} has token id {reprlib.repr(bad)}; ids are integers in [0, {vocab})")
        if call.input_type != "document":
            raise InvalidInput("input_type 'query' needs text input: with token ids, include the instruction's ids yourself")

    async def embed(self, call: EmbedCall) -> Embedded:
        self.check(call)
        self.batcher.check_room()  # a full server says so before tokenising
        ids = self._limited_ids(call.token_ids) if call.token_ids is not None else await self._tokenize(call)
        rows = await self.batcher.submit(ids)
        dim = call.dimensions or self.dims[0]
        vectors = F.normalize(rows[:, :dim], dim=-1).numpy()
        return Embedded(vectors, sum(map(len, ids)), call)

    async def _tokenize(self, call: EmbedCall) -> list[list[int]]:
        prompt = self.exported.prompts.get(call.input_type, "")
        texts = [prompt + t for t in call.texts]
        if sum(map(len, texts)) < INLINE_CHARS:  # cheaper than a hop to a thread
            return self._tokenize_chunks(texts)
        # a big request must not stall the event loop
        return await asyncio.get_running_loop().run_in_executor(None, self._tokenize_chunks, texts)

    def _tokenize_chunks(self, texts: list[str]) -> list[list[int]]:
        tokenizer, cfg = self.exported.encoder.tokenizer, self.cfg
        ids: list[list[int]] = []
        for start in range(0, len(texts), TOKENIZE_CHUNK):
            try:
                ids += encode_limited(tokenizer, texts[start : start + TOKENIZE_CHUNK], cfg.max_input_tokens,
                                      cfg.on_too_long == "reject")
            except InputTooLong as exc:  # renumbered from the chunk to the request
                raise InputTooLong(exc.index + start, exc.tokens, exc.limit, exc.at_least) from None
            self._check_total(ids)
        return ids

    def _limited_ids(self, token_ids: list[list[int]]) -> list[list[int]]:
        """Token ids as given; one over max_input_tokens is cut by the EOS rule, or refused."""
        limit, eos = self.cfg.max_input_tokens, self.exported.encoder.tokenizer.eos_token_id
        for i, row in enumerate(token_ids):
            if len(row) > limit and self.cfg.on_too_long == "reject":
                raise InputTooLong(i, len(row), limit)
        ids = [row if len(row) <= limit else row[: limit - 1] + [eos] for row in token_ids]
        self._check_total(ids)
        return ids

    def _check_total(self, ids: list[list[int]]) -> None:
        total = sum(map(len, ids))
        if total > self.cfg.max_request_tokens:
            raise RequestTooLarge(f"the request holds at least {total} tokens; at most {self.cfg.max_request_tokens} per request")

    # --- KServe v1 / v2
    async def preprocess(self, payload: dict | InferRequest, headers: dict[str, str] | None = None) -> EmbedCall:
        if isinstance(payload, InferRequest):
            if len(payload.inputs) != 1 or payload.inputs[0].datatype != "BYTES":
                raise InvalidInput("expected one BYTES input tensor of texts")
            tensor = payload.inputs[0]
            data = tensor.data or []
            if tensor.shape not in ([len(data)], [len(data), 1]):
                raise InvalidInput(f"input {reprlib.repr(tensor.name)} has shape {reprlib.repr(tensor.shape)} but holds {len(data)} texts")
            try:
                texts = [t.decode("utf-8") if isinstance(t, bytes) else t for t in data]
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"a text of input {reprlib.repr(tensor.name)} is not UTF-8: {exc}") from None
            params = payload.parameters or {}  # REST v2: plain values
            return EmbedCall(texts, params.get("input_type", "document"), params.get("dimensions"),
                             v2_id=payload.id or str(uuid.uuid4()))
        if isinstance(payload, bytes):  # v1 sent without a JSON content type: KServe passes the raw body
            try:
                payload = orjson.loads(payload)  # no recursion: depth is bounded by the parser
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"the request body is not UTF-8 JSON: {exc}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
            raise InvalidInput('expected {"instances": [text, ...]}')
        return EmbedCall(payload["instances"], payload.get("input_type", "document"), payload.get("dimensions"))

    async def predict(self, payload: EmbedCall, headers: dict[str, str] | None = None) -> Embedded:
        return await self.embed(payload)

    async def postprocess(self, result: Embedded, headers: dict[str, str] | None = None) -> dict | InferResponse:
        if result.call.v2_id is None:
            return {"predictions": result.vectors.tolist()}
        output = InferOutput(name="embedding", shape=list(result.vectors.shape), datatype="FP32", data=result.vectors)
        return InferResponse(response_id=result.call.v2_id, model_name=self.name, infer_outputs=[output])


def _pooling_mode(pooling: dict) -> str:
    """sentence-transformers >= 6 writes `pooling_mode`; older exports one boolean per mode."""
    named = pooling.get("pooling_mode") or next(
        (k.removeprefix("pooling_mode_") for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True), None
    )
    modes = {"lasttoken": "last", "mean": "mean", "mean_tokens": "mean"}
    if named not in modes:
        raise ValueError(f"pooling mode {named!r} of the export is not served; one of {sorted(modes)}")
    return modes[named]


