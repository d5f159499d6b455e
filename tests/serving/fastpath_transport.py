"""httpx over the data plane's own HTTP protocol: real HTTP/1.1 bytes in and out, an in-memory socket between.

The conformance tests run through both ways into the data plane (ASGI, and `serving.fastpath.DataPlaneProtocol` as
uvicorn runs it) without a server thread per test: each request is written to a fresh protocol instance as raw
bytes and the bytes it writes back are parsed as a client would.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import httpx
import uvicorn
from uvicorn.server import ServerState

from serving.fastpath import DataPlaneProtocol


class MemorySocket(asyncio.Transport):
    """What the protocol writes, parsed as an HTTP/1.1 client would (responses in order)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.writes = 0
        self.closed = False
        self.reading = True
        self.responses: list[tuple[int, list[tuple[bytes, bytes]], bytes]] = []
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._body = bytearray()
        self.changed = asyncio.Event()

    # asyncio.Transport
    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.written += data
        self.writes += 1
        if bytes(data).startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
            return  # an interim answer, not one of the responses
        self._parser.feed_data(bytes(data))
        self.changed.set()

    def close(self) -> None:
        self.closed = True
        self.changed.set()

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = []
        self._body = bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.responses.append((self._parser.get_status_code(), self._headers, bytes(self._body)))

    async def wait(self, responses: int, timeout: float = 10.0) -> None:
        """Until `responses` complete responses were written (or the socket was closed)."""
        async with asyncio.timeout(timeout):
            while len(self.responses) < responses and not self.closed:
                self.changed.clear()
                await self.changed.wait()


def fastpath_connection(app: Any) -> tuple[DataPlaneProtocol, MemorySocket]:
    """A DataPlaneProtocol serving `app` on a fresh in-memory connection."""
    config = uvicorn.Config(app, http=DataPlaneProtocol, lifespan="off", proxy_headers=False, log_config=None)
    config.load()
    protocol = DataPlaneProtocol(config=config, server_state=ServerState(), app_state={})
    socket = MemorySocket()
    protocol.connection_made(socket)
    return protocol, socket


def raw_request(method: str, target: str, headers: dict[str, str] | list[tuple[str, str]], body: bytes = b"") -> bytes:
    items = headers.items() if isinstance(headers, dict) else headers
    lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in items)]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def chunked(body: bytes, size: int = 100) -> bytes:
    """`body` in chunked transfer coding, `size` bytes a chunk."""
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


class FastPathTransport(httpx.AsyncBaseTransport):
    """Each request on its own connection to a DataPlaneProtocol serving `app` (Django's paths take ASGI there)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        if any(name.lower() == "transfer-encoding" and value == "chunked" for name, value in headers):
            body = chunked(body)
        elif body and not any(name.lower() == "content-length" for name, _ in headers):
            headers.append(("content-length", str(len(body))))
        target = request.url.raw_path.decode("ascii")
        protocol, socket = fastpath_connection(self.app)
        protocol.data_received(raw_request(request.method, target, headers, body))
        await socket.wait(1)
        protocol.connection_lost(None)
        assert socket.responses, f"no response to {request.method} {target}: {bytes(socket.written)!r}"
        status, response_headers, content = socket.responses[0]
        return httpx.Response(status, headers=response_headers, content=content, request=request)
