"""The data plane over RSGI (serving.rsgi), driven in process with a stand-in for granian's protocol object."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from serving.router import router_get
from serving.rsgi import WEBSOCKET_REFUSED, RSGIApplication, _Lifespan
from tests.serving.conftest import Deployed

pytestmark = pytest.mark.django_db(transaction=True)

X = np.random.default_rng(7).normal(size=(3, 4)).astype(np.float32)


class Headers:
    """granian's RSGIHeaders as far as the adapter reads it."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = {name.lower(): value for name, value in headers.items()}  # as hyper hands them over

    def items(self) -> list[tuple[str, str]]:
        return list(self._headers.items())


@dataclass
class Scope:
    path: str
    method: str = "POST"
    headers: Headers = field(default_factory=lambda: Headers({}))
    proto: str = "http"
    http_version: str = "1.1"
    client: str = "10.1.2.3:5555"
    server: str = "127.0.0.1:8000"
    scheme: str = "http"
    query_string: str = ""


class FakeProtocol:
    """Records what the application answers; counts how often it reads the body."""

    def __init__(self, body: bytes = b"", chunks: list[bytes] | None = None) -> None:
        self.body = body
        self.chunks = chunks
        self.reads = 0
        self.responses: list[tuple[int, dict[str, str], bytes]] = []
        self.closed: int | None = None

    async def __call__(self) -> bytes:
        self.reads += 1
        return self.body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.reads += 1
        for chunk in self.chunks or [self.body]:
            yield chunk

    async def client_disconnect(self) -> None:
        await asyncio.Event().wait()  # the client stays

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.responses.append((status, {name.lower(): value for name, value in headers}, body))

    def close(self, status: int) -> None:
        self.closed = status


def infer_body() -> bytes:
    tensor = {"name": "x", "datatype": "FP32", "shape": [3, 4], "data": X.ravel().tolist()}
    return json.dumps({"id": "rsgi", "inputs": [tensor]}).encode()


def infer_scope(path: str, body: bytes, extra: dict[str, str] | None = None) -> Scope:
    headers = {"content-type": "application/json", "content-length": str(len(body)), **(extra or {})}
    return Scope(path=path, headers=Headers(headers))


@pytest.fixture
async def rsgi(deployed: Deployed) -> AsyncIterator[RSGIApplication]:
    from config.rsgi import application

    yield application
    router_get().stop()
    await sync_to_async(connections.close_all, thread_sensitive=True)()


async def test_an_inference_request_is_answered_from_the_model(rsgi: RSGIApplication, deployed: Deployed) -> None:
    body = infer_body()
    protocol = FakeProtocol(body)
    await rsgi.__rsgi__(infer_scope("/v2/models/iris/infer", body, deployed.auth()), protocol)
    [(status, headers, content)] = protocol.responses
    assert status == 200, content
    answer = json.loads(content)
    assert answer["id"] == "rsgi"
    assert answer["model_version"] == "1"
    np.testing.assert_allclose(answer["outputs"][0]["data"], deployed.expected(1, X).ravel(), rtol=1e-6)
    assert headers["content-type"] == "application/json"
    assert headers["x-modeldeck-version"] == "1"
    assert protocol.reads == 1


async def test_a_chunked_body_is_read_as_it_comes(rsgi: RSGIApplication, deployed: Deployed) -> None:
    body = infer_body()
    protocol = FakeProtocol(chunks=[body[:10], body[10:]])
    scope = Scope(
        path="/v2/models/iris/infer",
        headers=Headers({"content-type": "application/json", "transfer-encoding": "chunked", **deployed.auth()}),
    )
    await rsgi.__rsgi__(scope, protocol)
    [(status, _headers, content)] = protocol.responses
    assert status == 200, content
    np.testing.assert_allclose(json.loads(content)["outputs"][0]["data"], deployed.expected(1, X).ravel(), rtol=1e-6)


class StallingProtocol(FakeProtocol):
    """A client that sends its first chunk (or nothing, for a declared body) and then goes quiet."""

    async def __call__(self) -> bytes:
        await asyncio.Event().wait()
        raise AssertionError("never")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body[:10]
        await asyncio.Event().wait()


class VanishingProtocol(FakeProtocol):
    """A client that goes away mid-body: granian raises its RSGIProtocolClosed."""

    async def __call__(self) -> bytes:
        raise ConnectionResetError("closed")


@pytest.mark.parametrize("declared", [True, False])
async def test_a_body_that_stalls_gets_408(
    rsgi: RSGIApplication, deployed: Deployed, monkeypatch: pytest.MonkeyPatch, declared: bool
) -> None:
    monkeypatch.setattr(rsgi.dataplane, "body_timeout", 0.3)
    body = infer_body()
    protocol = StallingProtocol(body)
    scope = infer_scope("/v2/models/iris/infer", body, deployed.auth())
    if not declared:
        scope.headers = Headers({"transfer-encoding": "chunked", "content-type": "application/json", **deployed.auth()})
    await asyncio.wait_for(rsgi.__rsgi__(scope, protocol), 5)
    [(status, headers, content)] = protocol.responses
    assert (status, json.loads(content)) == (408, {"error": "the request body did not arrive within 0.3 s"})
    assert headers["connection"] == "close"
    assert rsgi.dataplane.budget.inflight == 0


async def test_a_client_gone_mid_body_is_a_400_not_a_500(rsgi: RSGIApplication, deployed: Deployed) -> None:
    body = infer_body()
    protocol = VanishingProtocol(body)
    await rsgi.__rsgi__(infer_scope("/v2/models/iris/infer", body, deployed.auth()), protocol)
    [(status, _headers, content)] = protocol.responses
    assert (status, json.loads(content)) == (400, {"error": "the client went away before sending the whole body"})
    assert rsgi.dataplane.budget.inflight == 0


async def test_an_unknown_path_is_404_in_the_protocols_shape_without_reading_the_body(
    rsgi: RSGIApplication, deployed: Deployed
) -> None:
    body = infer_body()
    protocol = FakeProtocol(body)
    await rsgi.__rsgi__(infer_scope("/v2/nothing/here", body, deployed.auth()), protocol)
    assert protocol.responses == [
        (404, {"content-type": "application/json"}, b'{"error": "no inference API at /v2/nothing/here"}')
    ]
    assert protocol.reads == 0
    # A name that is no endpoint, with a valid token: the V2 404 from the handler.
    protocol = FakeProtocol(body)
    await rsgi.__rsgi__(infer_scope("/v2/models/nope/infer", body, deployed.auth()), protocol)
    [(status, _headers, content)] = protocol.responses
    assert status == 404
    assert json.loads(content) == {"error": "endpoint 'nope' not found"}


async def test_a_caller_without_a_valid_token_is_refused_before_the_body_is_read(
    rsgi: RSGIApplication, deployed: Deployed
) -> None:
    body = infer_body()
    for auth in ({}, {"Authorization": "Bearer not-a-token"}, deployed.auth(deployed.outsider)):
        protocol = FakeProtocol(body)
        await rsgi.__rsgi__(infer_scope("/v2/models/iris/infer", body, auth), protocol)
        [(status, headers, content)] = protocol.responses
        if auth == deployed.auth(deployed.outsider):
            assert status == 404, content  # another team's endpoint reads as a name that does not exist
        else:
            assert status == 401, content
            assert headers["www-authenticate"].startswith("Bearer")
        assert protocol.reads == 0


async def test_every_other_request_goes_to_django_through_the_asgi_bridge(rsgi: RSGIApplication) -> None:
    protocol = FakeProtocol()
    await rsgi.__rsgi__(Scope(path="/api/v1/models", method="GET"), protocol)
    [(status, headers, content)] = protocol.responses
    assert status == 401  # DRF's answer: the REST API wants a login or a token
    assert headers["content-type"] == "application/json"
    assert "x-frame-options" in headers  # Django's middleware ran
    assert json.loads(content)["error"]["code"]


async def test_websockets_are_refused(rsgi: RSGIApplication) -> None:
    protocol = FakeProtocol()
    await rsgi.__rsgi__(Scope(path="/ws/team/alpha/", method="GET", proto="ws"), protocol)
    assert protocol.closed == WEBSOCKET_REFUSED
    assert protocol.responses == []


def test_the_lifespan_runs_startup_and_shutdown_on_granians_loop() -> None:
    """__rsgi_init__/__rsgi_del__ drive the ASGI app's lifespan on a loop that is not running yet."""
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            seen.append(message["type"])
            await send({"type": f"{message['type']}.complete"})
            if message["type"] == "lifespan.shutdown":
                return

    loop = asyncio.new_event_loop()
    try:
        lifespan = _Lifespan(app)
        loop.run_until_complete(lifespan.startup())
        assert seen == ["lifespan.startup"]
        loop.run_until_complete(asyncio.sleep(0))  # the app stays between the two, as while granian serves
        loop.run_until_complete(lifespan.shutdown())
        assert seen == ["lifespan.startup", "lifespan.shutdown"]
        assert lifespan.task is not None
        assert lifespan.task.done()
    finally:
        loop.close()
