"""`f2llm serve`: a KServe ModelServer around our predictor, on one port.

KServe gives v1 (`/v1/models/{name}:predict`), v2 / open inference (`/v2/models/{name}/infer`),
health and readiness (`/v2/health/ready`, `/v1/models/{name}`) and Prometheus `/metrics`; we add
the OpenAI routes (`openai_api.py`), a request body limit (413 before anything is parsed) and the
mapping of an over-long input to 413 on every protocol.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from f2llm.config import ServeConfig
from f2llm.model.tokenizer import InputTooLong
from f2llm.serve.predictor import EmbeddingPredictor


class BodyLimit:
    """ASGI middleware: bodies over `max_bytes` get 413, by Content-Length or while streaming."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        return JSONResponse({"error": {"message": f"request body over {self.max_bytes} bytes",
                                       "type": "invalid_request_error", "param": None, "code": "request_too_large"}},
                            status_code=413)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large()(scope, receive, send)
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _Overflow
            return message

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _Overflow:
            if not started:
                await self._too_large()(scope, receive, send)


class _Overflow(Exception):
    pass


def build(cfg: ServeConfig):
    """-> (ModelServer, loaded predictor), routes installed, not yet started."""
    import kserve
    from kserve.model_server import app

    from f2llm.serve import openai_api

    predictor = EmbeddingPredictor(cfg)
    predictor.load()
    openai_api.install(app, predictor)
    app.add_middleware(BodyLimit, max_bytes=cfg.max_request_bytes)

    async def too_long(_, exc: InputTooLong):
        return JSONResponse({"error": str(exc)}, status_code=413)

    app.add_exception_handler(InputTooLong, too_long)
    server = kserve.ModelServer(http_port=cfg.http_port, enable_grpc=False, workers=1, enable_docs_url=False)
    return server, predictor


def serve(cfg: ServeConfig) -> None:
    server, predictor = build(cfg)
    server.start([predictor])
