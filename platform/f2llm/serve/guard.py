"""The server's edge: what a hostile client can do to a request is answered here, before KServe's
routes or ours see it.

- content type: a request with a body must say `application/json` (415);
- size: a body over `max_request_bytes` is refused by its Content-Length or while it streams (413);
- time: the body must arrive within `body_timeout_s` (408); the request head's own deadline is the
  HTTP protocol's (`server.py`);
- JSON: the body must parse (orjson: no lone surrogates, no number beyond a double) and nest at
  most MAX_JSON_DEPTH deep (400), so the routes' own parsers only ever see safe documents;
- hang-ups: a client that goes away has its request cancelled, queued work included
  (`batching.py`), and is logged at INFO, without a traceback;
- failures: an exception becomes a 500 whose body names nothing of it, logged once with its
  traceback; the app never raises into uvicorn, which would drop the keep-alive connection;
- metrics: every response is counted by protocol and status, 413/415/5xx included; a client
  that hung up counts as 499.
Errors take the caller's protocol's shape (`error_response`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson
from fastapi.responses import JSONResponse
from prometheus_client import Counter

log = logging.getLogger("f2llm.serve")

MAX_JSON_DEPTH = 32  # our requests nest 4 deep; Python's json recursion gives out near 1,000
RESPONSES = Counter("f2llm_http_responses", "HTTP responses by protocol and status (499: the client hung up)",
                    ["protocol", "code"])


def protocol_of(path: str) -> str:
    return "openai" if path.startswith("/openai/") else "v2" if path.startswith("/v2/") else \
        "v1" if path.startswith("/v1/") else "other"


def error_response(path: str, status: int, message: str, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """OpenAI's error object under /openai; KServe's `{"error": message}` elsewhere."""
    if protocol_of(path) == "openai":
        kind = "invalid_request_error" if status < 500 else "server_error"
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    else:
        body = {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class Refused(Exception):
    """A request answered at the edge with a 4xx."""

    status: int
    message: str
    code: str | None = None
    close: bool = False  # the rest of the body was not read: the connection cannot carry another request


class _ClientGone(Exception):
    pass


class Guard:
    """ASGI middleware: the checks above, around the whole app."""

    def __init__(self, app, max_bytes: int, body_timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, status = scope["path"], None

        async def tracked(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            body = await self._body(scope, receive)
            await self._run(scope, body, receive, tracked)
        except Refused as refusal:
            headers = {"connection": "close"} if refusal.close else None
            if status is None:
                await error_response(path, refusal.status, refusal.message, refusal.code, headers=headers)(scope, receive, tracked)
        except _ClientGone:
            log.info("%s %s: the client went away; its request was dropped", scope["method"], path)
            status = status or 499
        except Exception:  # noqa: BLE001 - answered, and logged once
            log.exception("%s %s failed", scope["method"], path)
            if status is None:
                await error_response(path, 500, "internal server error")(scope, receive, tracked)
        finally:
            RESPONSES.labels(protocol_of(path), str(status or 499)).inc()

    async def _body(self, scope, receive) -> bytes:
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            raise Refused(413, f"request body over {self.max_bytes} bytes", "request_too_large", close=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        chunks, seen = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except TimeoutError:
                raise Refused(408, f"the request body did not arrive within {self.body_timeout_s:g} s",
                              "request_timeout", close=True) from None
            if message["type"] == "http.disconnect":
                raise _ClientGone
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise Refused(413, f"request body over {self.max_bytes} bytes", "request_too_large", close=True)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if media != b"application/json":
                raise Refused(415, f"content-type must be application/json, not {media.decode('latin-1') or 'absent'}",
                              "unsupported_media_type")
            _check_json(body)
        return body

    async def _run(self, scope, body: bytes, receive, send) -> None:
        """The app with the body replayed; a disconnect meanwhile cancels it."""
        gone = asyncio.Event()
        replay = [{"type": "http.request", "body": body, "more_body": False}]

        async def replayed():
            if replay:
                return replay.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def watch():  # after the body, uvicorn's receive() returns only on disconnect or response end
            await receive()
            gone.set()

        app = asyncio.ensure_future(self.app(scope, replayed, send))
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({app, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if not app.done():
            app.cancel()
            try:
                await app
            except asyncio.CancelledError:
                pass
            raise _ClientGone
        app.result()


def _check_json(body: bytes) -> None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"the request body is not valid JSON: {exc}", "invalid_json") from None
    level = [document]
    for _ in range(MAX_JSON_DEPTH + 1):
        level = [child for node in level if isinstance(node, (list, dict))
                 for child in (node.values() if isinstance(node, dict) else node)]
        if not level:
            return
    raise Refused(400, f"the request body is JSON nested deeper than {MAX_JSON_DEPTH} levels", "invalid_json")
