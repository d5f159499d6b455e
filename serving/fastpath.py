"""uvicorn's httptools protocol with a short way in for the inference paths.

An ASGI request costs uvicorn a scope, a task started before the body arrives, an event per body chunk, message
dicts both ways and two writes: on an earlier, slower development VM an empty ASGI app cost 70-75 µs of CPU per
request against 33 µs for the same raw httptools parsing, several times a batched MLP request's share of the model
(bench/serving.py's batching rows show what is left per request). This protocol answers
the data plane's paths (GET and POST under /v2, /v1/models and /mlflow/) straight from the parser's callbacks: the
handler starts once the headers are parsed and decides on them (route, declared length, token, endpoint, content
type) before it asks for the body; the body is collected as it is parsed (no more than 64 KiB before it is asked
for), and the answer goes out in one write. The same `DataPlane` resolves, authorizes, validates, runs and records
as on the ASGI path, which every other request (and every other method, upgrades, an over-limit server) still takes
unchanged, with the same body rules (timeout, in-flight cap, what happens to a refused body).

HTTP semantics kept from uvicorn's cycle: keep-alive and `Connection: close` (HTTP/1.0 closes), pipelined requests
answered in order (fast and ASGI ones mixed), `Expect: 100-continue` (answered once the headers are accepted), the
body limit (413 as soon as a declared Content-Length is over it, else once the limit is passed), the server's
default headers, the access log, and a graceful shutdown that lets a request in flight finish. Response header names
and values are checked with uvicorn's own patterns before anything is written: one that would break the message
(CR, LF, another control character, a name that is not a token) never reaches the wire; the request is answered 500
in its protocol's shape instead, and logged. Use it with `uvicorn --http serving.fastpath:DataPlaneProtocol`.

It subclasses uvicorn's protocol and relies on parts of it that uvicorn does not document: serving.private_internals
lists each one with the measurement that justifies it, and tests/serving/test_private_internals.py fails naming the
one an upgrade changed.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE, HttpToolsProtocol

from serving.protocols.errors import ProtocolError

if TYPE_CHECKING:
    from serving.asgi import DataPlane
    from serving.request import Handler, Request, Response

FAST_METHODS = frozenset({b"GET", b"POST"})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
INTERNAL_ERROR = "internal error; the server log has the details"  # what serving.core says of any other bug
# Response header lines already checked, by (name, value): the same few headers go out on nearly every answer, and a
# lookup costs less than encoding and checking them again (or than writing them unchecked, as this path once did).
HEADER_LINES: dict[tuple[str, str], bytes] = {}
HEADER_LINES_MAX = 4096


class InvalidHeader(ValueError):
    """A response header that cannot be written as it is (uvicorn raises RuntimeError for the same headers)."""


def header_line(name: str | bytes, value: str | bytes) -> bytes:
    """`name: value` and its CRLF, once both pass uvicorn's checks (its HEADER_RE and HEADER_VALUE_RE): a name is
    ASCII without separators or controls, a value latin-1 without controls but tab. Raises InvalidHeader."""
    try:
        raw_name = name if isinstance(name, bytes) else name.encode("ascii")
        raw_value = value if isinstance(value, bytes) else value.encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidHeader(f"Invalid HTTP header: {name!r}: {value!r}") from None
    if HEADER_RE.search(raw_name) or not raw_name:
        raise InvalidHeader(f"Invalid HTTP header name: {name!r}")
    if HEADER_VALUE_RE.search(raw_value):
        raise InvalidHeader(f"Invalid HTTP header value for {name!r}: {value!r}")
    return b"%s: %s\r\n" % (raw_name, raw_value)


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
        # The server's default headers (server, date, --header) as checked and written last: uvicorn's Server puts a
        # new list in server_state every second, so a list seen before is not checked again.
        self.checked_defaults: tuple[object, bytes] = (None, b"")

    def checked_default_headers(self) -> bytes:
        """The server's default header lines, checked as uvicorn checks them (raises InvalidHeader)."""
        defaults = self.server_state.default_headers
        seen, lines = self.checked_defaults
        if defaults is not seen:
            lines = b"".join([header_line(name, value) for name, value in defaults])
            self.checked_defaults = (defaults, lines)
        return lines

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
            # The header phase runs now; the handler reads the body only once it has accepted the request.
            self._start_asgi_task(cycle, self.app)
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
        cycle.wake()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if type(cycle) is not FastCycle:
            super()._start_asgi_task(cycle, app)
            return
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
    """One request on the short way: its header phase, its body once the handler asks for it, then its answer. Quacks
    like uvicorn's cycle where the protocol and the server touch it (`response_complete`, `keep_alive`,
    `disconnected`, `message_event.set()`)."""

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
        self.deadline = 0.0  # for the body, counted from when this request's turn comes (see run)
        self.chunks: list[bytes] = []
        self.size = 0
        self.declared = dataplane.declared_length(headers)
        self.more_body = self.declared != 0 and (self.declared is not None or "transfer-encoding" in headers)
        self.request: Request | None = None  # set once the handler reads the body
        self.failure: ProtocolError | None = None  # why the body stopped being read (over the limit or the cap)
        self.disconnected = False
        self.response_complete = False
        self.message_event = self  # connection_lost calls message_event.set()
        self._waiter: asyncio.Future[None] | None = None
        self.handler: Handler | None = None
        self.params: dict[str, str] = {}
        self.rejected: Response | None = None  # answered on the headers alone: no route, or declared too large
        resolved = dataplane.on_headers(method, path, self.declared)
        if isinstance(resolved, tuple):
            self.handler, self.params = resolved
        else:
            self.rejected = resolved

    def add_body(self, chunk: bytes) -> None:
        if self.response_complete or self.rejected is not None or self.failure is not None:
            return  # answered already, or refused: the rest of the body is read and dropped, as uvicorn does
        self.size += len(chunk)
        self.chunks.append(chunk)
        request = self.request
        if request is None:
            if self.size > self.dataplane.drain_bytes:
                # Not asked for yet (the header phase is running): hold no more than uvicorn's cycle would.
                self.protocol.flow.pause_reading()
            return
        if self.size > self.dataplane.max_body:
            self._fail(self.dataplane.too_large_error())
        elif self.declared is None:
            try:
                self.dataplane.reserve(request, len(chunk))
            except ProtocolError as exc:
                self._fail(exc)

    def _fail(self, error: ProtocolError) -> None:
        self.failure = error
        self.chunks = []
        self.wake()

    def set(self) -> None:
        self.wake()

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self, request: Request) -> bytes:
        """The body, once the handler has accepted the request on its headers (`Request.read`)."""
        dataplane = self.dataplane
        protocol = self.protocol
        self.request = request
        dataplane.reserve(request, self.size if self.declared is None else self.declared)
        if self.size > dataplane.max_body:
            raise dataplane.too_large_error()
        if self.more_body:
            if self.expect_100_continue and not protocol.transport.is_closing():
                protocol.transport.write(CONTINUE)
                self.expect_100_continue = False
            protocol.flow.resume_reading()
            try:
                async with asyncio.timeout_at(self.deadline):
                    while self.more_body and self.failure is None and not self.disconnected:
                        self._waiter = protocol.loop.create_future()
                        await self._waiter
            except TimeoutError:
                raise dataplane.too_slow_error() from None
            if self.failure is not None:
                raise self.failure
            if self.disconnected:
                raise ProtocolError("the client went away before sending the whole body", 400)
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    async def run(self) -> None:
        protocol = self.protocol
        dataplane = self.dataplane
        request: Request | None = None
        response = self.rejected
        self.deadline = protocol.loop.time() + dataplane.body_timeout
        try:
            if response is None:
                assert self.handler is not None
                client = protocol.client
                request = dataplane.request_class(
                    self.method, self.path, self.headers, b"", self.params, client=client[0] if client else ""
                )
                if self.more_body or self.size:
                    request.reader = self.read
                try:
                    response = await dataplane.answer(request, self.handler)
                finally:
                    dataplane.release(request)
            response = dataplane.closing(response, self.declared, not self.more_body)
            if protocol.flow.write_paused and not self.disconnected:
                await protocol.flow.drain()
            if self.disconnected or protocol.transport.is_closing():
                return
            status = self._write(response)
        except BaseException as exc:  # as uvicorn's cycle: logged, and the connection closed, never left hanging
            if not isinstance(exc, asyncio.CancelledError):
                protocol.logger.error("Exception in the data plane's fast path", exc_info=exc)
            if not self.response_complete:
                protocol.transport.close()
            return
        if request is not None:
            dataplane.record(request, status, time.perf_counter() - self.started)

    def _head(self, response: Response, defaults: bytes) -> tuple[list[bytes], bool]:
        """The status line and header lines of `response`, and whether the connection stays open after it. Raises
        InvalidHeader before anything is written."""
        keep_alive = self.keep_alive
        content = [STATUS_LINE[response.status], defaults, b"content-length: %d\r\n" % len(response.body)]
        for item in response.headers.items():
            if item[0] == "connection":
                keep_alive = False  # written once, below
                continue
            line = HEADER_LINES.get(item)
            if line is None:
                line = header_line(*item)
                if len(HEADER_LINES) >= HEADER_LINES_MAX:  # bounded: headers that vary per response only clear it
                    HEADER_LINES.clear()
                HEADER_LINES[item] = line
            content.append(line)
        if not keep_alive:
            content.append(b"connection: close\r\n")
        return content, keep_alive

    def _write(self, response: Response) -> int:
        """Write `response` in one write; returns the status written: 500 in the protocol's shape, logged, when a
        header of `response` (or of the server's defaults) cannot be written as it is."""
        protocol = self.protocol
        try:
            defaults = protocol.checked_default_headers()
            content, keep_alive = self._head(response, defaults)
        except InvalidHeader as exc:
            protocol.logger.error("Refused a response header on %s %s: %s", self.method, self.path, exc)
            from serving.views import error_response  # Django is set up once requests arrive

            refusal = error_response(self.path, 500, INTERNAL_ERROR)
            if "connection" in response.headers:
                refusal.headers["connection"] = "close"  # what it answered leaves an unread body behind
            try:
                defaults = protocol.checked_default_headers()
            except InvalidHeader:
                defaults = b""  # the server's own --header is the bad one: answer without them
            content, keep_alive = self._head(refusal, defaults)
            response = refusal
        self.keep_alive = keep_alive
        content += [b"\r\n", response.body]
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
        if not keep_alive:
            protocol.transport.close()
        protocol.on_response_complete()
        return response.status
