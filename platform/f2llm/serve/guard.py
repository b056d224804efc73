"""The server's edge: what a hostile client can do to a request is answered here, before KServe's
routes or ours see it.

- content type: a request with a body must say `application/json` (415);
- size: a body over `max_request_bytes` is refused by its Content-Length or while it streams (413);
  all bodies held at once stay under `max_buffered_bytes` (beyond: 503 + Retry-After);
- forms we do not serve: KServe's binary tensor extension and CloudEvents headers (415);
- time: the body must arrive within `body_timeout_s` (408); the request head's own deadline is the
  HTTP protocol's (`server.py`);
- JSON: the raw bytes are scanned first (strings blanked, brackets counted: no objects built) for
  nesting deeper than MAX_JSON_DEPTH or more than MAX_JSON_CONTAINERS arrays and objects, then
  parsed by orjson (no lone surrogates, no number beyond a double); 400 otherwise. The routes' own
  parsers then only ever see small, shallow, valid documents. Big bodies are checked off the
  event loop;
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
import re
from dataclasses import dataclass

import numpy as np
import orjson
from fastapi.responses import JSONResponse
from prometheus_client import Counter

log = logging.getLogger("f2llm.serve")

MAX_JSON_DEPTH = 32  # our requests nest 4 deep; Python's json recursion gives out near 1,000
MAX_JSON_CONTAINERS = 16_384  # arrays and objects per body; token-id requests need max_inputs + 1
INLINE_BYTES = 65_536  # bodies up to this are checked on the event loop
REFUSED_HEADERS = (b"inference-header-content-length", b"ce-")  # binary tensors, CloudEvents
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
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

    def __init__(self, app, max_bytes: int, body_timeout_s: float, max_buffered_bytes: int = 64 * 2**20):
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s
        self.max_buffered_bytes = max_buffered_bytes
        self.buffered = 0  # bytes of the bodies of the requests in progress

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, status = scope["path"], None

        async def tracked(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        held = [0]  # this request's share of self.buffered
        try:
            body = await self._body(scope, receive, held)
            await self._run(scope, body, receive, tracked)
        except Refused as refusal:
            headers = {"connection": "close"} if refusal.close else None
            if refusal.status == 503:
                headers = {**(headers or {}), "retry-after": "1"}
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
            self.buffered -= held[0]
            RESPONSES.labels(protocol_of(path), str(status or 499)).inc()

    def _hold(self, held: list[int], size: int) -> None:
        """Count `size` more bytes against the shared budget (a lone request always fits)."""
        if self.buffered - held[0] > 0 and self.buffered + size > self.max_buffered_bytes:
            raise Refused(503, "the server is holding as many request bodies as it may; retry shortly",
                          "server_busy", close=True)
        self.buffered += size
        held[0] += size

    async def _body(self, scope, receive, held: list[int]) -> bytes:
        headers = dict(scope["headers"])
        if any(name.startswith(REFUSED_HEADERS) for name in headers):
            raise Refused(415, "binary tensor and CloudEvents requests are not served; send JSON",
                          "unsupported_media_type")
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            raise Refused(413, f"request body over {self.max_bytes} bytes", "request_too_large", close=True)
        if declared:
            self._hold(held, int(declared))
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
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                raise Refused(413, f"request body over {self.max_bytes} bytes", "request_too_large", close=True)
            if seen > held[0]:  # streamed without (or beyond) a Content-Length
                self._hold(held, seen - held[0])
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if media != b"application/json":
                raise Refused(415, f"content-type must be application/json, not {media.decode('latin-1') or 'absent'}",
                              "unsupported_media_type")
            if len(body) <= INLINE_BYTES:
                _check_json(body)
            else:
                await loop.run_in_executor(None, _check_json, body)
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
    """Refused(400) unless the body is JSON of bounded nesting and size, checked before parsing."""
    blanked = np.frombuffer(_JSON_STRING.sub(b'""', body), np.uint8)  # brackets inside strings gone
    opens = (blanked == ord("[")) | (blanked == ord("{"))
    containers = int(opens.sum())
    if containers > MAX_JSON_CONTAINERS:
        raise Refused(400, f"the request body holds {containers} JSON arrays and objects; at most {MAX_JSON_CONTAINERS}",
                      "invalid_json")
    closes = (blanked == ord("]")) | (blanked == ord("}"))
    if containers and int(np.cumsum(opens.astype(np.int32) - closes).max()) > MAX_JSON_DEPTH:
        raise Refused(400, f"the request body is JSON nested deeper than {MAX_JSON_DEPTH} levels", "invalid_json")
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"the request body is not valid JSON: {exc}", "invalid_json") from None
