"""The data plane's HTTP protocol (serving.fastpath) as HTTP: keep-alive, pipelining, 100-continue, body limits,
closing, shutdown. Raw bytes in, raw bytes out, on an in-memory connection; the protocol conformance tests run
through it too (the `client` fixture's "fastpath" side)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from serving.asgi import DataPlane
from serving.fastpath import FastCycle, InvalidHeader, _dataplane, header_line
from serving.request import Handler, Request, Response
from serving.router import router_get
from serving.views import ROUTES
from tests.serving.conftest import Deployed
from tests.serving.fastpath_transport import MemorySocket, chunked, fastpath_connection, raw_request

pytestmark = pytest.mark.django_db(transaction=True)

X = np.random.default_rng(5).normal(size=(2, 4)).astype(np.float32)
PATH = "/v2/models/iris-public/infer"


def body(request_id: str = "r") -> bytes:
    return json.dumps(
        {"id": request_id, "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": X.ravel().tolist()}]}
    ).encode()


def infer(request_id: str = "r", extra: dict[str, str] | None = None) -> bytes:
    data = body(request_id)
    return raw_request("POST", PATH, {"host": "t", "content-length": str(len(data)), **(extra or {})}, data)


def answer(socket: MemorySocket, index: int) -> dict[str, Any]:
    status, _headers, content = socket.responses[index]
    assert status == 200, content
    return json.loads(content)


def headers_of(socket: MemorySocket, index: int) -> dict[bytes, bytes]:
    return dict(socket.responses[index][1])


@pytest.fixture
async def app(deployed: Deployed) -> Any:
    from config.asgi import application

    yield application
    router_get().stop()
    await sync_to_async(connections.close_all, thread_sensitive=True)()


async def test_an_inference_request_is_answered_in_one_write_and_the_connection_kept(
    app: Any, deployed: Deployed
) -> None:
    protocol, socket = fastpath_connection(app)
    protocol.server_state.default_headers = [(b"server", b"modeldeck-test")]  # uvicorn's Server keeps date here
    protocol.data_received(infer("first"))
    assert type(protocol.cycle) is FastCycle
    await socket.wait(1)
    first = answer(socket, 0)
    assert first["id"] == "first"
    np.testing.assert_allclose(first["outputs"][0]["data"], deployed.expected(1, X).ravel(), rtol=1e-6)
    assert socket.writes == 1
    assert headers_of(socket, 0)[b"x-modeldeck-version"] == b"1"
    assert headers_of(socket, 0)[b"server"] == b"modeldeck-test"  # the server's default headers, as uvicorn's
    assert not socket.closed

    protocol.data_received(infer("second"))  # keep-alive: the same connection answers again
    await socket.wait(2)
    assert answer(socket, 1)["id"] == "second"
    assert not socket.closed


async def test_pipelined_requests_are_answered_in_order_across_both_paths(app: Any, deployed: Deployed) -> None:
    warm, socket = fastpath_connection(app)
    warm.data_received(infer("warm-up"))  # the router loads the endpoints; the token stays unchecked
    await socket.wait(1)

    protocol, socket = fastpath_connection(app)
    # The first request is the slowest (its token is looked up in the database): the rest must wait their turn.
    slow = infer("a", deployed.auth()).replace(b"iris-public", b"iris")
    options = raw_request("OPTIONS", "/v2/health/live", {"host": "t"})  # not GET/POST: the ASGI path
    metadata = raw_request("GET", "/v2/models/iris-public", {"host": "t"})
    protocol.data_received(slow + options + metadata + infer("b"))
    await socket.wait(4)
    assert [status for status, _, _ in socket.responses] == [200, 405, 200, 200]
    assert answer(socket, 0)["id"] == "a"
    assert answer(socket, 2)["name"] == "iris-public"
    assert answer(socket, 3)["id"] == "b"
    assert not socket.closed


async def test_a_body_in_pieces_and_a_chunked_body(app: Any) -> None:
    protocol, socket = fastpath_connection(app)
    data = infer("pieces")
    for start in range(0, len(data), 37):
        protocol.data_received(data[start : start + 37])
        await asyncio.sleep(0)
    await socket.wait(1)
    assert answer(socket, 0)["id"] == "pieces"

    headers = {"host": "t", "transfer-encoding": "chunked"}
    protocol.data_received(raw_request("POST", PATH, headers, chunked(body("chunked"), size=50)))
    await socket.wait(2)
    assert answer(socket, 1)["id"] == "chunked"


async def test_http_1_0_and_connection_close_end_the_connection(app: Any) -> None:
    protocol, socket = fastpath_connection(app)
    data = body("old")
    protocol.data_received(b"POST " + PATH.encode() + b" HTTP/1.0\r\ncontent-length: %d\r\n\r\n" % len(data) + data)
    await socket.wait(1)
    assert answer(socket, 0)["id"] == "old"
    assert headers_of(socket, 0)[b"connection"] == b"close"
    assert socket.closed

    protocol, socket = fastpath_connection(app)
    protocol.data_received(infer("bye", {"connection": "close"}))
    await socket.wait(1)
    assert answer(socket, 0)["id"] == "bye"
    assert headers_of(socket, 0)[b"connection"] == b"close"
    assert socket.closed


async def test_expect_100_continue(app: Any) -> None:
    protocol, socket = fastpath_connection(app)
    data = body("continued")
    headers = {"host": "t", "content-length": str(len(data)), "expect": "100-continue"}
    protocol.data_received(raw_request("POST", PATH, headers))
    async with asyncio.timeout(5):  # once the header phase has accepted the request
        while not socket.written:
            await asyncio.sleep(0.01)
    assert bytes(socket.written) == b"HTTP/1.1 100 Continue\r\n\r\n"
    protocol.data_received(data)
    await socket.wait(1)
    assert answer(socket, 0)["id"] == "continued"


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(settings: Any, deployed: Deployed) -> None:
    settings.MODELDECK_MAX_INFER_BYTES = 600
    from config.asgi import application

    protocol, socket = fastpath_connection(DataPlane(application.app, ROUTES))
    headers = {"host": "t", "content-length": "5000", "expect": "100-continue"}
    protocol.data_received(raw_request("POST", PATH, headers))
    await socket.wait(1)
    status, _, content = socket.responses[0]
    assert (status, json.loads(content)) == (413, {"error": "the request body is larger than 600 bytes"})
    assert b"100 Continue" not in socket.written  # refused: the client need not send it
    # A client that sends the body anyway: it is read and dropped, and the connection goes on.
    protocol.data_received(b"x" * 5000 + infer("after"))
    await socket.wait(2)
    assert answer(socket, 1)["id"] == "after"
    router_get().stop()
    await sync_to_async(connections.close_all, thread_sensitive=True)()


async def test_a_client_gone_mid_body_gets_nothing_and_leaves_nothing(app: Any) -> None:
    protocol, socket = fastpath_connection(app)
    protocol.data_received(infer("gone")[:-10])
    protocol.connection_lost(None)
    async with asyncio.timeout(5):  # its header phase may still be running: it ends as soon as it asks for the body
        while protocol.tasks:
            await asyncio.sleep(0.01)
    assert bytes(socket.written) == b""


async def test_shutdown_lets_the_request_in_flight_finish_then_closes(app: Any) -> None:
    protocol, socket = fastpath_connection(app)
    data = infer("last")
    protocol.data_received(data[:-10])
    protocol.shutdown()  # what uvicorn does to every connection on SIGTERM
    assert not socket.closed
    protocol.data_received(data[-10:])
    await socket.wait(1)
    assert answer(socket, 0)["id"] == "last"
    assert headers_of(socket, 0)[b"connection"] == b"close"
    assert socket.closed


async def test_other_methods_and_paths_take_uvicorns_asgi_cycle(app: Any) -> None:
    protocol, socket = fastpath_connection(app)
    protocol.data_received(raw_request("OPTIONS", "/v2/health/live", {"host": "t"}))
    assert type(protocol.cycle) is RequestResponseCycle
    await socket.wait(1)
    status, _, content = socket.responses[0]
    assert (status, json.loads(content)) == (405, {"error": "OPTIONS is not allowed on /v2/health/live; use GET"})


def test_the_data_plane_is_found_behind_proxy_headers_only() -> None:
    plane = DataPlane(lambda scope, receive, send: None, ROUTES)  # type: ignore[arg-type,return-value]
    assert _dataplane(plane) is plane
    assert _dataplane(ProxyHeadersMiddleware(plane)) is plane  # type: ignore[arg-type]
    assert _dataplane(object()) is None  # any other app: every request takes uvicorn's own path


async def test_the_access_log_reads_as_uvicorns(app: Any, caplog: pytest.LogCaptureFixture) -> None:
    protocol, socket = fastpath_connection(app)
    assert protocol.access_log  # pytest's capture handler is on the root logger
    with caplog.at_level("INFO", logger="uvicorn.access"):
        data = body("logged")
        headers = {"host": "t", "content-length": str(len(data))}
        protocol.data_received(raw_request("POST", PATH + "?trace=1", headers, data))
        await socket.wait(1)
    assert answer(socket, 0)["id"] == "logged"
    assert [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"] == [
        f'127.0.0.1:50000 - "POST {PATH}?trace=1 HTTP/1.1" 200'
    ]


INJECTED = "1\r\nX-Injected: 1"
BAD_HEADERS = [
    ("x-evil", INJECTED),  # response splitting
    ("x-evil", "a\nb"),
    ("x-evil", "a\x00b"),
    ("x-evil", "\u20ac"),  # not latin-1: cannot be written at all
    ("x evil", "1"),
    ("x-evil:", "1"),
    ("x-\u00e9vil", "1"),  # names are ASCII tokens
    ("", "1"),
]


def header_app(headers: dict[str, str]) -> DataPlane:
    """A data plane whose only handler, on each protocol's prefix, answers 200 with `headers` (a handler bug)."""

    async def handler(request: Request) -> Response:
        return Response(200, b"{}", {"content-type": "application/json", **headers})

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("every request here takes the fast path")

    methods: dict[str, Handler] = {"GET": handler, "POST": handler}
    routes = [(re.compile(r"^(/v2|/v1/models|/mlflow)/bad$"), methods)]
    return DataPlane(fallback, routes)


@pytest.mark.parametrize(("name", "value"), BAD_HEADERS)
async def test_a_header_that_would_break_the_message_never_reaches_the_wire(
    caplog: pytest.LogCaptureFixture, name: str, value: str
) -> None:
    protocol, socket = fastpath_connection(header_app({name: value}))
    with caplog.at_level("ERROR", logger="uvicorn.error"):
        protocol.data_received(raw_request("GET", "/v2/bad", {"host": "t"}))
        await socket.wait(1)
    status, headers, content = socket.responses[0]
    assert (status, json.loads(content)) == (500, {"error": "internal error; the server log has the details"})
    assert dict(headers)[b"content-type"] == b"application/json"
    assert b"injected" not in bytes(socket.written).lower()
    assert b"evil" not in bytes(socket.written)
    assert [r.levelno for r in caplog.records if "Refused a response header on GET /v2/bad" in r.getMessage()] == [
        logging.ERROR
    ]
    # Nothing was written before the check: the connection is still in step and answers the next request.
    assert not socket.closed
    protocol.data_received(raw_request("GET", "/v2/bad", {"host": "t"}))
    await socket.wait(2)
    assert socket.responses[1][0] == 500


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/models/bad", {"error": "internal error; the server log has the details"}),
        ("/mlflow/bad", {"error_code": "INTERNAL_ERROR", "message": "internal error; the server log has the details"}),
    ],
)
async def test_the_refusal_is_in_the_protocols_shape_and_keeps_connection_close(
    path: str, expected: dict[str, str]
) -> None:
    # `connection: close` (set when a refused body is left unread) must survive the swap, or the unread body would
    # be parsed as the next request.
    protocol, socket = fastpath_connection(header_app({"x-evil": INJECTED, "connection": "close"}))
    protocol.data_received(raw_request("GET", path, {"host": "t"}))
    await socket.wait(1)
    status, headers, content = socket.responses[0]
    assert (status, json.loads(content)) == (500, expected)
    assert dict(headers)[b"connection"] == b"close"
    assert socket.closed


async def test_a_bad_server_default_header_is_refused_too() -> None:
    protocol, socket = fastpath_connection(header_app({}))
    protocol.server_state.default_headers = [(b"server", b"modeldeck"), (b"x-operator", b"a\r\nX-Injected: 1")]
    protocol.data_received(raw_request("GET", "/v2/bad", {"host": "t"}))
    await socket.wait(1)
    status, headers, _content = socket.responses[0]
    assert status == 500
    assert b"injected" not in bytes(socket.written).lower()
    assert b"server" not in dict(headers)  # answered without the defaults, since one of them is the bad one
    # Fixed (uvicorn's Server puts a new list in place every second): checked again, and written.
    protocol.server_state.default_headers = [(b"server", b"modeldeck")]
    protocol.data_received(raw_request("GET", "/v2/bad", {"host": "t"}))
    await socket.wait(2)
    assert socket.responses[1][0] == 200
    assert dict(socket.responses[1][1])[b"server"] == b"modeldeck"


async def test_good_headers_are_written_as_given() -> None:
    protocol, socket = fastpath_connection(header_app({"x-note": 'tab\there, caf\u00e9 "quoted" (ok)'}))
    protocol.data_received(raw_request("GET", "/v2/bad", {"host": "t"}))
    await socket.wait(1)
    status, headers, _content = socket.responses[0]
    assert status == 200
    assert dict(headers)[b"x-note"] == 'tab\there, caf\u00e9 "quoted" (ok)'.encode("latin-1")


class WriteSink(asyncio.Transport):
    """Takes what is written without parsing it (uvicorn writes bytes over 0x7f in a name, which a parser refuses)."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def test_header_checks_refuse_exactly_what_uvicorns_cycle_refuses() -> None:
    """Every byte, in a name and in a value, through uvicorn's own RequestResponseCycle.send and through
    header_line: both refuse the same ones (so the fast path refuses what the ASGI path refuses)."""
    refused: dict[str, list[int]] = {"uvicorn": [], "fastpath": []}
    for byte in range(256):
        for name, value in ((b"x%cy" % byte, b"v"), (b"x", b"v%cw" % byte)):
            socket = WriteSink()
            cycle = RequestResponseCycle(
                scope={"method": "GET", "http_version": "1.1", "path": "/", "query_string": b""},  # type: ignore[typeddict-item]
                transport=socket,
                flow=FlowControl(socket),
                logger=logging.getLogger("uvicorn.error"),
                access_logger=logging.getLogger("uvicorn.access"),
                access_log=False,
                default_headers=[],
                message_event=asyncio.Event(),
                expect_100_continue=False,
                keep_alive=True,
                on_response=lambda: None,
            )
            try:
                await cycle.send({"type": "http.response.start", "status": 200, "headers": [(name, value)]})
            except RuntimeError:
                refused["uvicorn"].append(byte if value == b"v" else 256 + byte)
            try:
                header_line(name, value)
            except InvalidHeader:
                refused["fastpath"].append(byte if value == b"v" else 256 + byte)
    assert refused["fastpath"] == refused["uvicorn"]
    assert 13 in refused["uvicorn"] and 256 + 10 in refused["uvicorn"]  # CR in a name, LF in a value
