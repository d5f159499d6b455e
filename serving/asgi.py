"""The data plane's front door: inference paths are answered here, everything else goes on to Django.

Why not Django views: measured on this 2-core machine (bench/serving.py prints it), Django's ASGI handler costs
about 0.9 ms per request even for an empty async view with no middleware, and tops out near 1,000 req/s (each
response is closed through a thread hop on one shared thread). Triton-class serving needs a fraction of that, so
the inference paths are plain async functions behind this small router, with no DRF, no middleware and no ORM
query per request; Django still serves the browser, the REST API and the websockets.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

from monitoring.drift import drift_monitor
from monitoring.flusher import flusher
from monitoring.recorder import recorder
from serving import core
from serving.protocols.errors import ProtocolError
from serving.request import BodyBudget, Handler, Request, Response
from serving.views import error_response

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIXES = ("/v2", "/v1/models", "/mlflow/")
RESOLVED_MAX = 4096
# A refused request's unread body up to this (uvicorn's HIGH_WATER_LIMIT) is read and dropped so the connection can
# serve the next request, as uvicorn does; a larger or chunked one is not waited for: the answer says
# `connection: close` and the connection is closed once it is written (nginx's answer to a body it will not read).
DRAIN_BYTES = 64 * 1024


class DataPlane:
    """Answer the inference protocols' paths; pass every other request (and websockets) to `app`."""

    # For serving.fastpath, which cannot import this module before Django is set up.
    request_class = Request
    raw_prefixes = tuple(prefix.encode() for prefix in PREFIXES)  # matched against the request target's bytes
    drain_bytes = DRAIN_BYTES

    def __init__(self, app: ASGIApp, routes: list[tuple[re.Pattern[str], dict[str, Handler]]]) -> None:
        self.app = app
        self.routes = routes
        # (method, path) -> handler and path parameters (read-only): the same few paths carry nearly every request.
        self._resolved: dict[tuple[str, str], tuple[Handler, dict[str, str]]] = {}
        self.max_body = settings.MODELDECK_MAX_INFER_BYTES
        self.body_timeout = settings.MODELDECK_BODY_TIMEOUT_SECONDS
        # Body bytes this process is receiving or holding for requests not yet answered.
        self.budget = BodyBudget(settings.MODELDECK_MAX_INFLIGHT_BODY_BYTES)
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

    def on_headers(self, method: str, path: str, declared: int | None) -> tuple[Handler, dict[str, str]] | Response:
        """The header phase every transport runs before reading any body: the route (404/405) and the declared length
        (413). The handler then checks the caller, the endpoint and the content type before it reads the body."""
        resolved = self.resolve(method, path)
        if isinstance(resolved, Response):
            return resolved
        if declared is not None and declared > self.max_body:
            return self.too_large(path)
        return resolved

    def too_large(self, path: str) -> Response:
        return _error(path, 413, f"the request body is larger than {self.max_body} bytes")

    def too_large_error(self) -> ProtocolError:
        return ProtocolError(f"the request body is larger than {self.max_body} bytes", 413, {"connection": "close"})

    def too_slow_error(self) -> ProtocolError:
        message = f"the request body did not arrive within {self.body_timeout:g} s"
        return ProtocolError(message, 408, {"connection": "close"})

    def reserve(self, request: Request, size: int) -> None:
        """Count `size` more body bytes against the process's in-flight cap, or refuse the request with 503."""
        self.budget.reserve(request, size)

    def release(self, request: Request) -> None:
        self.budget.release(request)

    @staticmethod
    def declared_length(headers: dict[str, str]) -> int | None:
        """The Content-Length a request declares (the HTTP parser has refused a malformed one already)."""
        declared = headers.get("content-length")
        return int(declared) if declared is not None and declared.isascii() and declared.isdigit() else None

    @staticmethod
    def closing(response: Response, declared: int | None, complete: bool) -> Response:
        """`response`, told to close the connection when the body it leaves unread is too large to drain."""
        if complete or (declared is not None and declared <= DRAIN_BYTES) or "connection" in response.headers:
            return response
        return Response(response.status, response.body, {**response.headers, "connection": "close"})

    async def answer(self, request: Request, handler: Handler) -> Response:
        """Run a resolved request's handler; a bug still answers in the protocol's shape, and is logged."""
        try:
            return await handler(request)
        except Exception as exc:  # noqa: BLE001 -- any bug still gets an answer in the protocol's shape
            refusal = core.unexpected_error(request, exc)
            response = _error(request.path, refusal.status, refusal.message)
            response.headers.update(refusal.headers or {})
            return response

    @staticmethod
    def record(request: Request, status: int, elapsed: float) -> None:
        """Count an answered inference request in monitoring (once its handler knew the version)."""
        core.record(request, status, elapsed)

    async def _respond(self, scope: Scope, receive: Receive) -> tuple[Response, Request | None]:
        path: str = scope["path"]
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        declared = self.declared_length(headers)
        complete = declared == 0 or (declared is None and "transfer-encoding" not in headers)
        resolved = self.on_headers(scope["method"], path, declared)
        if isinstance(resolved, Response):
            return self.closing(resolved, declared, complete), None
        handler, params = resolved
        client = scope.get("client")
        request = Request(scope["method"], path, headers, b"", params, client=client[0] if client else "")
        body = None if complete else _AsgiBody(self, receive, declared)
        if body is not None:
            request.reader = body.read
        try:
            response = await self.answer(request, handler)
        finally:
            self.release(request)
        return self.closing(response, declared, body is None or body.complete), request

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        from common.events import event_relay
        from serving.decoding import decoding_stop
        from serving.router import router_get

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Load every live endpoint before the first request, and follow the control plane from now on.
                router_get().start()
                flusher.start()
                # Without a shared channel layer, the workers' events reach this process's sockets through the outbox.
                event_relay.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                router_get().stop()
                decoding_stop()
                await flusher.stop()
                await event_relay.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


class _AsgiBody:
    """Reads one request's body from ASGI `receive` once its handler asks: within the body timeout (counted from
    the headers), within the size limit, and counted against the in-flight cap as it arrives."""

    def __init__(self, dataplane: DataPlane, receive: Receive, declared: int | None) -> None:
        self.dataplane = dataplane
        self.receive = receive
        self.declared = declared
        self.deadline = asyncio.get_running_loop().time() + dataplane.body_timeout
        self.complete = False

    async def read(self, request: Request) -> bytes:
        dataplane = self.dataplane
        if self.declared is not None:
            dataplane.reserve(request, self.declared)
        chunks = []
        size = 0
        with BodyDeadline(dataplane, self.deadline):
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    raise ProtocolError("the client went away before sending the whole body", 400)
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > dataplane.max_body:
                    raise dataplane.too_large_error()
                if self.declared is None:
                    dataplane.reserve(request, len(chunk))
                chunks.append(chunk)
                if not message.get("more_body", False):
                    self.complete = True
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class BodyDeadline:
    """`with BodyDeadline(dataplane, deadline):` around a body read: when the deadline passes, the reading task is
    cancelled and the cancellation leaves the block as the 408 refusal (any other cancellation goes on). A timer
    that cancels the task, not asyncio.timeout(): that costs several µs a request on the hot path."""

    __slots__ = ("dataplane", "deadline", "expired", "task", "timer")

    def __init__(self, dataplane: DataPlane, deadline: float) -> None:
        self.dataplane = dataplane
        self.deadline = deadline
        self.expired = False

    def __enter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.timer = asyncio.get_running_loop().call_at(self.deadline, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self.task.cancel()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, traceback: object) -> None:
        self.timer.cancel()
        if self.expired and kind is not None and issubclass(kind, asyncio.CancelledError):
            self.task.uncancel()
            raise self.dataplane.too_slow_error() from None


def _error(path: str, status: int, message: str) -> Response:
    return error_response(path, status, message)
