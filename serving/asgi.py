"""The data plane's front door: inference paths are answered here, everything else goes on to Django.

Why not Django views: measured on this 2-core machine (bench/serving.py prints it), Django's ASGI handler costs
about 0.9 ms per request even for an empty async view with no middleware, and tops out near 1,000 req/s (each
response is closed through a thread hop on one shared thread). Triton-class serving needs a fraction of that, so
the inference paths are plain async functions behind this small router, with no DRF, no middleware and no ORM
query per request; Django still serves the browser, the REST API and the websockets.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from monitoring.drift import drift_monitor
from monitoring.flusher import flusher
from monitoring.recorder import recorder

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIXES = ("/v2", "/v1/models", "/mlflow/")
RESOLVED_MAX = 4096


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)
    # Set by an inference handler once it knows the version: (endpoint, version number, role, rows) to record.
    metric: tuple[str, int, str, int] | None = None


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


class BodyTooLarge(Exception):
    pass


Handler = Callable[[Request], Awaitable[Response]]


class DataPlane:
    """Answer the inference protocols' paths; pass every other request (and websockets) to `app`."""

    # For serving.fastpath, which cannot import this module before Django is set up.
    request_class = Request
    raw_prefixes = tuple(prefix.encode() for prefix in PREFIXES)  # matched against the request target's bytes

    def __init__(self, app: ASGIApp, routes: list[tuple[re.Pattern[str], dict[str, Handler]]]) -> None:
        self.app = app
        self.routes = routes
        # (method, path) -> handler and path parameters (read-only): the same few paths carry nearly every request.
        self._resolved: dict[tuple[str, str], tuple[Handler, dict[str, str]]] = {}
        self.max_body = settings.MODELDECK_MAX_INFER_BYTES
        recorder.enabled = settings.MODELDECK_RECORD_INFERENCE
        drift_monitor.sample_rate = settings.MODELDECK_DRIFT_SAMPLE_RATE if recorder.enabled else 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http" or not scope["path"].startswith(PREFIXES):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        response, request = await self._respond(scope, receive)
        elapsed = time.perf_counter() - started
        headers = [(b"content-length", str(len(response.body)).encode())]
        headers.extend((name.encode(), value.encode("latin-1")) for name, value in response.headers.items())
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
        if request is not None:
            self.record(request, response.status, elapsed)

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | Response:
        """The handler of a path and method with the path's parameters, or the 404/405 answer."""
        found = self._resolved.get((method, path))
        if found is not None:
            return found
        resolved = self._resolve(method, path)
        if isinstance(resolved, tuple):
            if len(self._resolved) >= RESOLVED_MAX:  # bounded: a flood of distinct names only clears it
                self._resolved.clear()
            self._resolved[(method, path)] = resolved
        return resolved

    def _resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | Response:
        for pattern, methods in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            handler = methods.get(method)
            if handler is None:
                allowed = ", ".join(methods)
                return _error(path, 405, f"{method} is not allowed on {path}; use {allowed}")
            return handler, {k: v for k, v in match.groupdict().items() if v}
        return _error(path, 404, f"no inference API at {path}")

    def too_large(self, path: str) -> Response:
        return _error(path, 413, f"the request body is larger than {self.max_body} bytes")

    async def answer(self, request: Request, handler: Handler) -> Response:
        """Run a resolved request's handler; a bug still answers in the protocol's shape, and is logged."""
        try:
            return await handler(request)
        except Exception:
            logger.exception("data plane error on %s %s", request.method, request.path)
            return _error(request.path, 500, "internal error; the server log has the details")

    @staticmethod
    def record(request: Request, status: int, elapsed: float) -> None:
        """Count an answered inference request in monitoring (once its handler knew the version)."""
        if request.metric is not None:
            endpoint, version, role, rows = request.metric
            recorder.record(endpoint, version, role, status, elapsed, rows)

    async def _respond(self, scope: Scope, receive: Receive) -> tuple[Response, Request | None]:
        path: str = scope["path"]
        resolved = self.resolve(scope["method"], path)
        if isinstance(resolved, Response):
            return resolved, None
        handler, params = resolved
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            body = await self._body(headers, receive) if scope["method"] == "POST" else b""
        except BodyTooLarge:
            return self.too_large(path), None
        request = Request(scope["method"], path, headers, body, params)
        return await self.answer(request, handler), request

    async def _body(self, headers: dict[str, str], receive: Receive) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > self.max_body:
            raise BodyTooLarge
        chunks = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        from serving.router import router_get

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Load every live endpoint before the first request, and follow the control plane from now on.
                router_get().start()
                flusher.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                router_get().stop()
                await flusher.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _error(path: str, status: int, message: str) -> Response:
    from serving.views import error_response  # views import this module

    return error_response(path, status, message)
