"""`f2llm serve`: KServe's v1 and v2 protocols and our OpenAI routes around one predictor, on uvicorn.

KServe does the protocols: its DataPlane, its v1/v2 route handlers, its model repository. We
assemble the app and the HTTP server ourselves instead of through `kserve.ModelServer`, because
what makes a server safe to expose is fixed in that assembly:
- host: ModelServer binds 0.0.0.0; here `--host` (default loopback; the ServingRuntimes pass 0.0.0.0);
- model control: KServe mounts /v2/repository load/unload for anyone; here they exist only with
  `model_control`, behind the F2LLM_CONTROL_TOKEN bearer token, and `load` really reloads;
- readiness: KServe's `/v2/health/ready` stays ready with no model loaded; ours says whether this
  model can serve (the chart's readiness probe);
- errors: KServe logs a traceback per 400 and names any other exception in a 500; ours answer in
  each protocol's shape without tracebacks for bad requests, and the edge (`guard.py`) turns
  anything unexpected into a bare 500 that keeps the connection;
- time: uvicorn closes idle keep-alive connections only; `head_deadline` also bounds how long a
  request head may take to arrive (slowloris).
"""

from __future__ import annotations

import hmac
import logging
import os

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.v1_endpoints import register_v1_endpoints
from kserve.protocol.rest.v2_endpoints import register_v2_endpoints
from prometheus_client import REGISTRY, exposition
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from f2llm.config import ServeConfig
from f2llm.model.tokenizer import InputTooLong
from f2llm.serve import openai_api
from f2llm.serve.batching import Closed, QueueFull
from f2llm.serve.guard import Guard, error_response
from f2llm.serve.predictor import EmbeddingPredictor, RequestTooLarge

CONTROL_TOKEN_ENV = "F2LLM_CONTROL_TOKEN"
log = logging.getLogger("f2llm.serve")

ERRORS = {  # request errors -> (HTTP status, OpenAI error code), the same on every protocol
    InvalidInput: (400, None), ModelNotFound: (404, "model_not_found"), InputTooLong: (413, "input_too_long"),
    RequestTooLarge: (413, "request_too_large"), ModelNotReady: (503, None), ServerNotReady: (503, None),
    QueueFull: (503, "server_busy"), Closed: (503, "model_not_loaded"), NotImplementedError: (501, None),
}


class OneModel(ModelRepository):
    """KServe's model repository holding the one configured model; `load` builds it again."""

    def __init__(self, cfg: ServeConfig):
        super().__init__(models_dir=cfg.model)
        self.cfg = cfg

    def load(self, name: str) -> bool:
        if self.serving() is not None:  # loaded already: never two copies of the weights
            return True
        predictor = EmbeddingPredictor(self.cfg)
        predictor.load()
        self.update(predictor)
        return predictor.ready

    def serving(self) -> EmbeddingPredictor | None:
        model = self.get_model(self.cfg.name)
        return model if model is not None and model.ready else None


def build_app(cfg: ServeConfig, repository: OneModel) -> FastAPI:
    """The ASGI app: health, metrics, KServe v1/v2, OpenAI routes, model control if asked; guarded."""
    app = FastAPI(title="f2llm serve", docs_url=None, redoc_url=None, openapi_url=None)
    dataplane = DataPlane(model_registry=repository)

    async def ready(request: Request):
        if repository.serving() is None:
            return error_response(request.url.path, 503, f"model {cfg.name!r} is not loaded")
        return {"ready": True}

    async def metrics(request: Request) -> Response:
        encoder, content_type = exposition.choose_encoder(request.headers.get("accept"))
        return Response(encoder(REGISTRY), headers={"content-type": content_type})

    async def control_off(request: Request):
        return error_response(request.url.path, 404, "model control is off (f2llm serve --model-control)")

    # Routes match in the order added: ours shadow KServe's readiness and repository routes.
    app.add_api_route("/v2/health/ready", ready)
    if cfg.model_control:
        _control_routes(app, repository)
    else:
        app.add_api_route("/v2/repository/{rest:path}", control_off, methods=["GET", "POST", "PUT", "DELETE"])
    app.add_api_route("/metrics", metrics)
    app.add_api_route("/", dataplane.live)
    register_v1_endpoints(app, dataplane, None)
    register_v2_endpoints(app, dataplane, None)
    openai_api.install(app, repository.serving)
    _error_handlers(app)
    app.add_middleware(Guard, max_bytes=cfg.max_request_bytes, body_timeout_s=cfg.body_timeout_s,
                       max_buffered_bytes=cfg.max_buffered_bytes)
    return app


def _control_routes(app: FastAPI, repository: OneModel) -> None:
    """Triton's model repository extension (KServe's implementation), for holders of the token."""
    token = os.environ.get(CONTROL_TOKEN_ENV, "")
    if len(token) < 16:
        raise SystemExit(f"model_control needs a secret of at least 16 characters in ${CONTROL_TOKEN_ENV}")
    extension = ModelRepositoryExtension(model_registry=repository)

    def control(action):
        async def route(model_name: str, request: Request):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return error_response(request.url.path, 401, "model control needs the bearer token",
                                      headers={"www-authenticate": "Bearer"})
            if model_name != repository.cfg.name:
                raise ModelNotFound(model_name)
            await getattr(extension, action)(model_name)
            log.info("model %s: %s", model_name, action)
            return {"name": model_name, action: True}
        return route

    for action in ("load", "unload"):
        app.add_api_route(f"/v2/repository/models/{{model_name}}/{action}", control(action), methods=["POST"])


def _error_handlers(app: FastAPI) -> None:
    async def request_error(request: Request, exc: Exception):
        status, code = next(answer for kind, answer in ERRORS.items() if isinstance(exc, kind))
        log.info("%s %s: %d %s", request.method, request.url.path, status, exc)
        retry = {"retry-after": str(exc.retry_after_s)} if isinstance(exc, QueueFull) else None
        return error_response(request.url.path, status, str(exc), code=code, headers=retry)

    async def http_error(request: Request, exc: HTTPException):
        return error_response(request.url.path, exc.status_code, str(exc.detail), headers=exc.headers)

    async def invalid_body(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]  # its "input" (the caller's own data) is not echoed back
        where = ".".join(str(part) for part in first["loc"])
        return error_response(request.url.path, 400, f"{where}: {first['msg']}")

    for kind in ERRORS:
        app.add_exception_handler(kind, request_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_body)


MAX_HEAD_BYTES = 65_536  # request line and headers


def head_deadline(timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP/1.1 protocol with bounds on each request head: a connection whose head is not
    complete `timeout_s` after it connected, or after its first byte arrived between requests (a
    lone CRLF included), or that sends more than MAX_HEAD_BYTES of head, is closed."""

    class HeadDeadline(HttpToolsProtocol):
        _head_timer = None
        _head_bytes = 0

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # bytes between requests: a head has begun
            super().data_received(data)
            if self._head_timer is not None:  # still no complete head: all of `data` was head
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    log.info("a request head over %d bytes: connection closed", MAX_HEAD_BYTES)
                    self._disarm()
                    self.transport.close()

        def on_headers_complete(self):
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

        def _arm(self):
            self._head_bytes = 0
            self._head_timer = self.loop.call_later(timeout_s, self._overdue)

        def _disarm(self):
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _overdue(self):
            self._head_timer = None
            log.info("a request head took over %g s: connection closed", timeout_s)
            self.transport.close()

    return HeadDeadline


def serve(cfg: ServeConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    repository = OneModel(cfg)
    repository.load(cfg.name)
    app = build_app(cfg, repository)
    config = uvicorn.Config(app, host=cfg.host, port=cfg.http_port, http=head_deadline(cfg.header_timeout_s),
                            timeout_keep_alive=cfg.keep_alive_s, limit_concurrency=cfg.max_connections,
                            log_config=None, access_log=False, timeout_graceful_shutdown=30)
    uvicorn.Server(config).run()
