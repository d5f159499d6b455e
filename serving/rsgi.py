"""The data plane over granian's RSGI interface: an experiment measured against uvicorn + serving.fastpath.

RSGI (granian's "Rust Server Gateway Interface", docs/spec/RSGI.md in granian's repository) hands the application
one call per request with a scope object and a protocol object: the body is read whole with `await protocol()`
and the answer goes out in one `protocol.response_bytes(status, headers, body)`, with HTTP parsing and socket I/O
done by Rust threads beside the Python one. The inference paths are answered here with the same `DataPlane` as the
ASGI path and the fast path (header phase, handlers, body rules, recording). A granian server runs one interface,
so every other request (the browser, the REST API) is passed to the ASGI app behind the data plane through a
small ASGI-over-RSGI bridge; websockets are not bridged (they are refused): a switch to granian would need that.

Run: `granian --interface rsgi --loop uvloop config.rsgi:application` (bench/serving.py measures it).
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import MutableMapping
from typing import Any, Protocol

from serving.asgi import PREFIXES, BodyDeadline, DataPlane
from serving.protocols.errors import ProtocolError
from serving.request import Handler, Request, Response

# Headers that describe one HTTP/1 connection: not allowed in an HTTP/2 answer (RFC 9113 8.2.2).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding"})
WEBSOCKET_REFUSED = 1011


class RSGIScope(Protocol):
    """What this module reads of granian's scope (granian.rsgi.Scope)."""

    proto: str
    http_version: str
    client: str
    server: str
    scheme: str
    method: str
    path: str
    query_string: str

    @property
    def headers(self) -> Any: ...  # a mapping-like object: items() -> list[tuple[str, str]]


class RSGIApplication:
    """An RSGI app over a `DataPlane`: inference answered directly, everything else through the ASGI bridge."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self._lifespan: _Lifespan | None = None

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # granian calls this in the worker before it serves, with the loop not running yet: the data plane's own
        # lifespan (load every live endpoint, start the flusher) runs to its startup here, as uvicorn runs it.
        self._lifespan = _Lifespan(self.dataplane)
        loop.run_until_complete(self._lifespan.startup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._lifespan is not None:
            loop.run_until_complete(self._lifespan.shutdown())

    async def __rsgi__(self, scope: RSGIScope, protocol: Any) -> None:
        if scope.proto != "http":
            protocol.close(WEBSOCKET_REFUSED)
            return
        path = scope.path
        if "%" in path:
            path = urllib.parse.unquote(path)
        if not path.startswith(PREFIXES):
            await _asgi_http(self.dataplane.app, scope, path, protocol)
            return
        started = time.perf_counter()
        response, request = await self._respond(scope, path, protocol)
        headers = list(response.headers.items())
        if scope.http_version == "2":
            headers = [(name, value) for name, value in headers if name not in HOP_BY_HOP]
        protocol.response_bytes(response.status, headers, response.body)
        if request is not None:
            self.dataplane.record(request, response.status, time.perf_counter() - started)

    async def _respond(self, scope: RSGIScope, path: str, protocol: Any) -> tuple[Response, Request | None]:
        dataplane = self.dataplane
        headers = dict(scope.headers.items())
        declared = dataplane.declared_length(headers)
        complete = declared == 0 or (declared is None and "transfer-encoding" not in headers)
        resolved = dataplane.on_headers(scope.method, path, declared)
        if isinstance(resolved, Response):
            # granian (hyper) reads and drops an unread body itself, or closes the connection.
            return resolved, None
        handler: Handler = resolved[0]
        request = Request(scope.method, path, headers, b"", resolved[1], client=scope.client.rpartition(":")[0])
        if not complete:
            request.reader = _RSGIBody(dataplane, protocol, declared).read
        try:
            response = await dataplane.answer(request, handler)
        finally:
            dataplane.release(request)
        return response, request


class _RSGIBody:
    """Reads one request's body from the RSGI protocol once its handler asks, with the same rules as the ASGI path:
    within the body timeout, within the size limit, counted against the in-flight cap."""

    def __init__(self, dataplane: DataPlane, protocol: Any, declared: int | None) -> None:
        self.dataplane = dataplane
        self.protocol = protocol
        self.declared = declared
        self.deadline = asyncio.get_running_loop().time() + dataplane.body_timeout

    async def read(self, request: Request) -> bytes:
        dataplane = self.dataplane
        with BodyDeadline(dataplane, self.deadline):
            try:
                if self.declared is not None:
                    # Declared and within the limit (the header phase checked it); hyper holds the sender to it.
                    dataplane.reserve(request, self.declared)
                    body: bytes = await self.protocol()
                    return body
                chunks = []
                size = 0
                async for chunk in self.protocol:
                    size += len(chunk)
                    if size > dataplane.max_body:
                        raise dataplane.too_large_error()
                    dataplane.reserve(request, len(chunk))
                    chunks.append(chunk)
                return b"".join(chunks)
            except ProtocolError:
                raise
            except Exception as exc:  # granian's RSGIProtocolClosed/-Error: the client went away mid-body
                raise ProtocolError("the client went away before sending the whole body", 400) from exc


class _Lifespan:
    """Drives an ASGI app's lifespan (startup now, shutdown later) from outside a server."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self.task = asyncio.get_running_loop().create_task(self.app(scope, self.inbox.get, self.outbox.put))
        await self._exchange("lifespan.startup")

    async def shutdown(self) -> None:
        await self._exchange("lifespan.shutdown")
        if self.task is not None:
            await self.task

    async def _exchange(self, message: str) -> None:
        await self.inbox.put({"type": message})
        answer = await self.outbox.get()
        if answer["type"] != f"{message}.complete":
            raise RuntimeError(f"{message} failed: {answer.get('message', answer['type'])}")


async def _asgi_http(app: Any, scope: RSGIScope, path: str, protocol: Any) -> None:
    """Serve one HTTP request with an ASGI app: the body whole as one message, the answer streamed as it is sent."""
    host, _, port = scope.server.rpartition(":")
    client_host, _, client_port = scope.client.rpartition(":")
    asgi_scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": {"1": "1.0"}.get(scope.http_version, scope.http_version),
        "method": scope.method,
        "scheme": scope.scheme,
        "path": path,
        "raw_path": scope.path.encode("latin-1"),
        "query_string": scope.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in scope.headers.items()],
        "server": (host, int(port)) if port.isdigit() else None,
        "client": (client_host, int(client_port)) if client_port.isdigit() else None,
        "state": {},
    }
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": await protocol(), "more_body": False}
        # Django listens for a disconnect while it answers: only a real one may end the request.
        await protocol.client_disconnect()
        return {"type": "http.disconnect"}

    status = 500
    headers: list[tuple[str, str]] = []
    stream: Any = None

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status, headers, stream
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if stream is None and not message.get("more_body", False):
                protocol.response_bytes(status, headers, body)
                return
            if stream is None:
                stream = protocol.response_stream(status, headers)
            if body:
                await stream.send_bytes(body)

    await app(asgi_scope, receive, send)
