"""OpenAI-compatible embeddings on the KServe server: `POST /openai/v1/embeddings`, `GET /openai/v1/models`.

Request: `input` (a string, a list of strings, a list of token ids or a list of such lists, as
OpenAI's API allows), `model` (the served name), optional
`dimensions` (a Matryoshka dim; the prefix is re-normalised), `encoding_format` ("float" or
"base64": little-endian float32 bytes, what the OpenAI client asks for by default), `user`
(ignored), and one extra field of ours, `input_type`: "document" (default) or "query" (adds
the model's query instruction). With the OpenAI client: `extra_body={"input_type": "query"}`.

Errors come back in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with
4xx codes: malformed JSON or non-UTF-8 body, wrong types, empty input, too many inputs (400),
unknown model (404), an input over the token limit when rejecting, or a request over
`max_request_tokens` (413), and 503 (+ Retry-After) when the server is full or the model is
unloaded. The edge (`guard.py`) has already refused bodies that are too big, slow, not JSON or
not `application/json`.
"""

from __future__ import annotations

import base64
import time
from typing import Callable, Literal

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from f2llm.serve.guard import error_response
from f2llm.serve.predictor import EmbedCall, EmbeddingPredictor

PATH = "/openai/v1/embeddings"
INPUT_SHAPES = "input must be a string, a list of strings, a list of token ids (integers) or a list of such lists"


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    model: StrictStr | None = None
    dimensions: StrictInt | None = None
    encoding_format: Literal["float", "base64"] = "float"
    input_type: Literal["document", "query"] = "document"
    user: StrictStr | None = None


def error(status: int, message: str, param: str | None = None, code: str | None = None) -> Response:
    return error_response(PATH, status, message, code=code, param=param)


def install(app: FastAPI, serving: Callable[[], EmbeddingPredictor | None]) -> None:
    """The routes; `serving()` is the loaded predictor, or None while the model is unloaded."""
    created = int(time.time())

    async def embeddings(request: Request):
        try:
            req = EmbeddingRequest.model_validate(orjson.loads(await request.body()))
        except orjson.JSONDecodeError as exc:  # the edge checked already; kept for direct callers
            return error(400, f"the request body is not valid JSON: {exc}")
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else None
            if field == "input":  # a union: pydantic's first complaint names only one of its arms
                return error(400, INPUT_SHAPES, param="input")
            return error(400, f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}", param=field)
        predictor = serving()
        if predictor is None:
            return error(503, "the model is not loaded", code="model_not_loaded")
        if req.model is not None and req.model != predictor.name:
            return error(404, f"model {req.model!r} is not served here; this server serves {predictor.name!r}",
                         param="model", code="model_not_found")
        result = await predictor.embed(_call(req))  # its errors: the server's handlers (`server.ERRORS`)
        data = [
            {"object": "embedding", "index": i,
             "embedding": base64.b64encode(row.astype("<f4").tobytes()).decode() if req.encoding_format == "base64" else row}
            for i, row in enumerate(result.vectors)
        ]
        body = {"object": "list", "data": data, "model": predictor.name,
                "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens}}
        # orjson writes the numpy rows directly (FastAPI's encoder would walk every float)
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

    async def models():
        predictor = serving()
        names = [predictor.name] if predictor is not None else []
        return {"object": "list", "data": [{"id": n, "object": "model", "created": created, "owned_by": "f2llm"} for n in names]}

    app.add_api_route(PATH, embeddings, methods=["POST"])
    app.add_api_route("/openai/v1/models", models, methods=["GET"])


def _call(req: EmbeddingRequest) -> EmbedCall:
    """Texts, or token ids: `[int, ...]` is one input, `[[int, ...], ...]` several."""
    if isinstance(req.input, str):
        return EmbedCall([req.input], req.input_type, req.dimensions)
    if req.input and all(isinstance(x, int) for x in req.input):
        return EmbedCall([], req.input_type, req.dimensions, token_ids=[req.input])
    if req.input and all(isinstance(x, list) for x in req.input):
        return EmbedCall([], req.input_type, req.dimensions, token_ids=req.input)
    return EmbedCall(req.input, req.input_type, req.dimensions)
