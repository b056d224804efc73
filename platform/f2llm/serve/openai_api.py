"""OpenAI-compatible embeddings on the KServe server: `POST /openai/v1/embeddings`, `GET /openai/v1/models`.

Request: `input` (a string or a list of strings), `model` (the served name), optional
`dimensions` (a Matryoshka dim; the prefix is re-normalised), `encoding_format` ("float" or
"base64": little-endian float32 bytes, what the OpenAI client asks for by default), `user`
(ignored), and one extra field of ours, `input_type`: "document" (default) or "query" (adds
the model's query instruction). With the OpenAI client: `extra_body={"input_type": "query"}`.

Errors come back in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with
4xx codes: malformed JSON or non-UTF-8 body, wrong types, empty input, too many inputs (400),
unknown model (404), an input over the token limit when rejecting (413).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Literal

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from kserve.errors import InvalidInput
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from f2llm.model.tokenizer import InputTooLong
from f2llm.serve.predictor import EmbedCall, EmbeddingPredictor


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: StrictStr | list[StrictStr]
    model: StrictStr | None = None
    dimensions: StrictInt | None = None
    encoding_format: Literal["float", "base64"] = "float"
    input_type: Literal["document", "query"] = "document"
    user: StrictStr | None = None


REQUESTS = Counter("f2llm_openai_embedding_requests", "OpenAI embedding requests by HTTP status", ["code"])


def error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    REQUESTS.labels(code=str(status)).inc()
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


def install(app: FastAPI, predictor: EmbeddingPredictor) -> None:
    created = int(time.time())

    async def embeddings(request: Request):
        try:
            body = json.loads((await request.body()).decode("utf-8"))
        except UnicodeDecodeError:
            return error(400, "the request body is not valid UTF-8")
        except json.JSONDecodeError as exc:
            return error(400, f"the request body is not valid JSON: {exc}")
        try:
            req = EmbeddingRequest.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            return error(400, f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}", param=str(first["loc"][0]) if first["loc"] else None)
        if req.model is not None and req.model != predictor.name:
            return error(404, f"model {req.model!r} is not served here; this server serves {predictor.name!r}",
                         param="model", code="model_not_found")
        texts = [req.input] if isinstance(req.input, str) else req.input
        try:
            result = await predictor.embed(EmbedCall(texts, req.input_type, req.dimensions))
        except InvalidInput as exc:
            return error(400, str(exc))
        except InputTooLong as exc:
            return error(413, str(exc), param="input", code="input_too_long")
        data = [
            {"object": "embedding", "index": i,
             "embedding": base64.b64encode(row.astype("<f4").tobytes()).decode() if req.encoding_format == "base64" else row}
            for i, row in enumerate(result.vectors)
        ]
        REQUESTS.labels(code="200").inc()
        body = {"object": "list", "data": data, "model": predictor.name,
                "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens}}
        # orjson writes the numpy rows directly (FastAPI's encoder would walk every float)
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

    async def models():
        return {"object": "list", "data": [{"id": predictor.name, "object": "model", "created": created, "owned_by": "f2llm"}]}

    app.add_api_route("/openai/v1/embeddings", embeddings, methods=["POST"])
    app.add_api_route("/openai/v1/models", models, methods=["GET"])
