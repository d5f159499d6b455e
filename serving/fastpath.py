"""uvicorn's httptools protocol with a short way in for the inference paths.

An ASGI request costs uvicorn a scope, a task started before the body arrives, an event per body chunk, message
dicts both ways and two writes: on an earlier, slower development VM an empty ASGI app cost 70-75 µs of CPU per
request against 33 µs for the same raw httptools parsing, several times a batched MLP request's share of the model
(bench/serving.py's batching rows show what is left per request). This protocol answers
the data plane's paths (GET and POST under /v2, /v1/models and /mlflow/) straight from the parser's callbacks: the
body is collected as it is parsed, the handler runs once it is complete, and the answer goes out in one write. The
same `DataPlane` resolves, authorizes, validates, runs and records as on the ASGI path, which every other request
(and every other method, upgrades, an over-limit server) still takes unchanged.

HTTP semantics kept from uvicorn's cycle: keep-alive and `Connection: close` (HTTP/1.0 closes), pipelined requests
answered in order (fast and ASGI ones mixed), `Expect: 100-continue`, the body limit (413 as soon as a declared
Content-Length is over it, else once the limit is passed), the server's default headers, the access log, and a
graceful shutdown that lets a request in flight finish. Use it with `uvicorn --http serving.fastpath:DataPlaneProtocol`.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

if TYPE_CHECKING:
    from serving.asgi import DataPlane, Handler, Request, Response

FAST_METHODS = frozenset({b"GET", b"POST"})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _dataplane(app: Any) -> DataPlane | None:
    """The DataPlane the server runs, if it is the app (proxy headers, which inference never reads, may wrap it)."""
    # Imported once the app is loaded: uvicorn imports this protocol class before Django is set up.
    from serving.asgi import DataPlane

    while isinstance(app, ProxyHeadersMiddleware):
        app = app.app
    return app if isinstance(app, DataPlane) else None


class DataPlaneProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that answers inference requests without ASGI (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dataplane = _dataplane(self.app)
        self.prefixes = self.dataplane.raw_prefixes if self.dataplane is not None else ()

    def on_message_begin(self) -> None:
        # uvicorn's builds the ASGI scope here; it is built only for a request that takes the ASGI path.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = None  # type: ignore[assignment]

    def on_headers_complete(self) -> None:
        method = self.parser.get_method()
        if (
            self.dataplane is None
            or method not in FAST_METHODS
            or not self.url.startswith(self.prefixes)
            or self.parser.should_upgrade()
            or self.root_path
            or self._over_concurrency_limit()
        ):
            url, headers, expect_100_continue = self.url, self.headers, self.expect_100_continue
            super().on_message_begin()
            self.url, self.headers, self.expect_100_continue = url, headers, expect_100_continue
            self.scope["headers"] = headers
            super().on_headers_complete()
            return
        parsed_url = httptools.parse_url(self.url)
        path = parsed_url.path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        http_version = self.parser.get_http_version()
        cycle = FastCycle(
            protocol=self,
            dataplane=self.dataplane,
            method=method.decode("ascii"),
            path=path,
            target=self.url,
            headers={name.decode("latin-1"): value.decode("latin-1") for name, value in self.headers},
            http_version=http_version,
            keep_alive=http_version != "1.0" and self.parser.should_keep_alive(),
            expect_100_continue=self.expect_100_continue,
        )
        existing = self.cycle
        self.cycle = cycle  # type: ignore[assignment]  # it has what the protocol and the server touch
        if existing is None or existing.response_complete:
            cycle.current = True
            if cycle.rejected is not None:
                self._start_asgi_task(cycle, self.app)
            elif cycle.expect_100_continue:
                self.transport.write(CONTINUE)
                cycle.expect_100_continue = False
        else:
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is not FastCycle:
            super().on_body(body)
            return
        cycle.add_body(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if type(cycle) is not FastCycle:
            super().on_message_complete()
            return
        cycle.more_body = False
        if cycle.current and not cycle.running:
            self._start_asgi_task(cycle, self.app)
        else:
            cycle.wake()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if type(cycle) is not FastCycle:
            super()._start_asgi_task(cycle, app)
            return
        cycle.current = cycle.running = True
        if self.config.reset_contextvars:
            task = self.loop.create_task(cycle.run(), context=contextvars.Context())
        else:
            task = self.loop.create_task(cycle.run())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _over_concurrency_limit(self) -> bool:
        limit = self.limit_concurrency
        return limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit)


class FastCycle:
    """One request on the short way: its body as it arrives, then its answer. Quacks like uvicorn's cycle where the
    protocol and the server touch it (`response_complete`, `keep_alive`, `disconnected`, `message_event.set()`)."""

    def __init__(
        self,
        *,
        protocol: DataPlaneProtocol,
        dataplane: DataPlane,
        method: str,
        path: str,
        target: bytes,
        headers: dict[str, str],
        http_version: str,
        keep_alive: bool,
        expect_100_continue: bool,
    ) -> None:
        self.protocol = protocol
        self.dataplane = dataplane
        self.method = method
        self.path = path
        self.target = target  # as sent, for the access log (with the query string, as uvicorn logs it)
        self.headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.expect_100_continue = expect_100_continue
        self.started = time.perf_counter()
        self.chunks: list[bytes] = []
        self.size = 0
        self.more_body = True
        self.current = False  # this connection's request being answered (not one queued behind it)
        self.running = False
        self.disconnected = False
        self.response_complete = False
        self.message_event = self  # connection_lost calls message_event.set()
        self._waiter: asyncio.Future[None] | None = None
        self.handler: Handler | None = None
        self.params: dict[str, str] = {}
        self.rejected: Response | None = None  # answered without reading the body: no route, or declared too large
        resolved = dataplane.resolve(method, path)
        if isinstance(resolved, tuple):
            self.handler, self.params = resolved
            declared = headers.get("content-length")
            if (
                declared is not None
                and declared.isascii()
                and declared.isdigit()
                and int(declared) > dataplane.max_body
            ):
                self.rejected = dataplane.too_large(path)
        else:
            self.rejected = resolved

    def add_body(self, chunk: bytes) -> None:
        if self.response_complete or self.rejected is not None:
            return  # answered already: the rest of the body is read and dropped, as uvicorn does
        self.size += len(chunk)
        if self.size > self.dataplane.max_body:
            self.chunks = []  # over the limit (a chunked body): answered with 413 once it ends
        else:
            self.chunks.append(chunk)

    def set(self) -> None:
        self.wake()

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def run(self) -> None:
        protocol = self.protocol
        request: Request | None = None
        response = self.rejected
        try:
            if response is None:
                if self.more_body:  # queued behind a pipelined request: its body was left unread
                    if self.expect_100_continue and not protocol.transport.is_closing():
                        protocol.transport.write(CONTINUE)
                    self._waiter = asyncio.get_running_loop().create_future()
                    protocol.flow.resume_reading()
                    await self._waiter
                if self.disconnected:
                    return
                if self.size > self.dataplane.max_body:
                    response = self.dataplane.too_large(self.path)
                else:
                    body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
                    assert self.handler is not None
                    request = self.dataplane.request_class(
                        self.method, self.path, self.headers, body if self.method == "POST" else b"", self.params
                    )
                    response = await self.dataplane.answer(request, self.handler)
            if protocol.flow.write_paused and not self.disconnected:
                await protocol.flow.drain()
            if self.disconnected or protocol.transport.is_closing():
                return
            self._write(response)
        except BaseException as exc:  # as uvicorn's cycle: logged, and the connection closed, never left hanging
            if not isinstance(exc, asyncio.CancelledError):
                protocol.logger.error("Exception in the data plane's fast path", exc_info=exc)
            if not self.response_complete:
                protocol.transport.close()
            return
        if request is not None:
            self.dataplane.record(request, response.status, time.perf_counter() - self.started)

    def _write(self, response: Response) -> None:
        protocol = self.protocol
        body = response.body
        content = [STATUS_LINE[response.status]]
        for default_name, default_value in protocol.server_state.default_headers:
            content += [default_name, b": ", default_value, b"\r\n"]
        content += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
        for name, value in response.headers.items():
            content += [name.encode(), b": ", value.encode("latin-1"), b"\r\n"]
        if not self.keep_alive:
            content.append(b"connection: close\r\n")
        content += [b"\r\n", body]
        protocol.transport.write(b"".join(content))
        if protocol.access_log:
            client = protocol.client
            protocol.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                f"{client[0]}:{client[1]}" if client else "-",
                self.method,
                self.target.decode("latin-1"),
                self.http_version,
                response.status,
            )
        self.response_complete = True
        if not self.keep_alive:
            protocol.transport.close()
        protocol.on_response_complete()
