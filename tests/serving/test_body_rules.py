"""The data plane decides on headers: refusals come before any body byte is read, bodies are timed and capped, and
large ones are decoded off the event loop. Each rule over both ways in (ASGI, and the fast path's HTTP protocol), plus
the Django paths' gate in front of Django and one check over a real socket."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from serving import decoding
from serving.asgi import DataPlane
from serving.protocols.errors import ProtocolError
from serving.router import router_get
from serving.views import ROUTES
from teams.choices import Role
from tests.asgi_server import asgi_server
from tests.serving.conftest import Deployed
from tests.serving.fastpath_transport import fastpath_connection, raw_request

pytestmark = pytest.mark.django_db(transaction=True)

X = np.random.default_rng(7).normal(size=(2, 4)).astype(np.float32)
PUBLIC = "/v2/models/iris-public/infer"
HUGE = 1024**3  # a body no test sends: a refusal that waited for it would never come


def infer_body(request_id: str = "r", pad_to: int = 0) -> bytes:
    data = json.dumps(
        {"id": request_id, "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": X.ravel().tolist()}]}
    ).encode()
    return data + b" " * max(0, pad_to - len(data))


def asgi_scope(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode("latin-1")) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


class AsgiClient:
    """Calls an ASGI app as a server would, the body handed over only as the test releases it."""

    def __init__(self, app: Any, method: str, path: str, headers: dict[str, str], chunks: list[bytes]) -> None:
        self.app = app
        self.scope = asgi_scope(method, path, headers)
        self.chunks = list(chunks)
        self.asked = 0  # receive() calls: how often the app asked for the body
        self.more = asyncio.Event()  # set to hand over the next chunk
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.asked += 1
        if not self.chunks:
            await asyncio.Event().wait()  # the client sends nothing more
        if self.asked > 1:
            await self.more.wait()
            self.more.clear()
        chunk = self.chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def run(self) -> tuple[int, dict[str, str], bytes]:
        async with asyncio.timeout(10):
            await self.app(self.scope, self.receive, self.send)
        start = self.sent[0]
        headers = {name.decode(): value.decode("latin-1") for name, value in start["headers"]}
        return start["status"], headers, b"".join(m.get("body", b"") for m in self.sent[1:])


async def headers_only(kind: str, app: Any, method: str, path: str, headers: dict[str, str]) -> tuple[Any, ...]:
    """Send a request's headers and none of its body; return (status, headers, body, whether the body was asked for)."""
    if kind == "asgi":
        client = AsgiClient(app, method, path, headers, [])
        status, response_headers, content = await client.run()
        return status, response_headers, content, client.asked > 0
    protocol, sock = fastpath_connection(app)
    protocol.data_received(raw_request(method, path, {"host": "t", **headers}))
    await sock.wait(1)
    status, raw_headers, content = sock.responses[0]
    response_headers = {name.decode(): value.decode("latin-1") for name, value in raw_headers}
    # The fast path cannot "not read" bytes it is given; it must not have asked for them (no 100 Continue).
    return status, response_headers, content, b"100 Continue" in sock.written


@pytest.fixture
async def plane(deployed: Deployed, settings: Any) -> AsyncIterator[Any]:
    """Build the data plane with the test's settings (it reads them once, as a server does at start)."""

    def build() -> DataPlane:
        from config.asgi import application

        return DataPlane(application.app, ROUTES)

    yield build
    router_get().stop()
    await sync_to_async(connections.close_all, thread_sensitive=True)()


@pytest.mark.parametrize("kind", ["asgi", "fastpath"])
async def test_refusals_are_answered_on_the_headers_alone(kind: str, plane: Any, deployed: Deployed) -> None:
    app = plane()
    big = {"content-length": str(10 * 1024**2), "expect": "100-continue"}
    cases = [
        ("POST", "/v2/models/iris/infer", big, 401),  # a private endpoint, no token
        ("POST", "/v2/models/iris/infer", {**big, **deployed.auth(deployed.outsider)}, 404),  # another team's
        ("POST", "/v1/models/nothing-here:predict", {**big, **deployed.auth()}, 404),
        ("POST", "/mlflow/iris-public/invocations", {**big, "content-type": "text/html"}, 415),
        ("POST", "/v2/health/live", big, 405),
        ("POST", PUBLIC, {"content-length": str(64 * 1024**2 + 1)}, 413),
    ]
    for method, path, headers, expected in cases:
        status, response_headers, content, body_asked = await headers_only(kind, app, method, path, headers)
        assert (path, status) == (path, expected), content
        assert not body_asked, path
        assert response_headers["connection"] == "close"  # 10 MB left unread is not drained: the connection goes
    # A small unread body is drained instead, and the connection kept (as uvicorn does).
    status, response_headers, _, _ = await headers_only(
        kind, app, "POST", "/v2/models/iris/infer", {"content-length": "900"}
    )
    assert status == 401
    assert "connection" not in response_headers


@pytest.mark.parametrize("kind", ["asgi", "fastpath"])
async def test_a_body_that_stalls_gets_408_and_the_connection_closed(kind: str, plane: Any, settings: Any) -> None:
    settings.MODELDECK_BODY_TIMEOUT_SECONDS = 0.3
    app = plane()
    data = infer_body()
    headers = {"content-length": str(len(data))}
    if kind == "asgi":
        client = AsgiClient(app, "POST", PUBLIC, headers, [data[:10], data[10:]])  # the rest never released
        status, response_headers, content = await client.run()
    else:
        protocol, sock = fastpath_connection(app)
        protocol.data_received(raw_request("POST", PUBLIC, {"host": "t", **headers}) + data[:10])
        await sock.wait(1)
        status, raw_headers, content = sock.responses[0]
        response_headers = {name.decode(): value.decode() for name, value in raw_headers}
        assert sock.closed
    assert (status, json.loads(content)) == (408, {"error": "the request body did not arrive within 0.3 s"})
    assert response_headers["connection"] == "close"


@pytest.mark.parametrize("kind", ["asgi", "fastpath"])
async def test_bodies_in_flight_are_capped_per_process(kind: str, plane: Any, settings: Any) -> None:
    settings.MODELDECK_MAX_INFLIGHT_BODY_BYTES = 1000
    app = plane()
    first = infer_body("first", pad_to=800)
    headers = {"content-length": str(len(first))}
    second = {"content-length": "400"}
    if kind == "asgi":
        holder = AsgiClient(app, "POST", PUBLIC, headers, [first[:100], first[100:]])
        holding = asyncio.create_task(holder.run())
        async with asyncio.timeout(5):
            while not holder.asked:  # its 800 bytes are now counted
                await asyncio.sleep(0.01)
        status, response_headers, content, _ = await headers_only(kind, app, "POST", PUBLIC, second)
        holder.more.set()
        assert (await holding)[0] == 200
    else:
        protocol, sock = fastpath_connection(app)
        protocol.data_received(raw_request("POST", PUBLIC, {"host": "t", **headers}) + first[:100])
        async with asyncio.timeout(5):
            while app.budget.inflight == 0:
                await asyncio.sleep(0.01)
        status, response_headers, content, _ = await headers_only(kind, app, "POST", PUBLIC, second)
        protocol.data_received(first[100:])
        await sock.wait(1)
        assert sock.responses[0][0] == 200
    assert status == 503
    assert json.loads(content) == {"error": "the server is receiving too many request bodies at once; retry shortly"}
    assert response_headers["retry-after"] == "1"
    assert app.budget.inflight == 0  # answered requests hold nothing
    # With the first one answered, the same request fits.
    data = infer_body("third")
    if kind == "asgi":
        client = AsgiClient(app, "POST", PUBLIC, {"content-length": str(len(data))}, [data])
        assert (await client.run())[0] == 200
    else:
        protocol, sock = fastpath_connection(app)
        protocol.data_received(raw_request("POST", PUBLIC, {"host": "t", "content-length": str(len(data))}, data))
        await sock.wait(1)
        assert sock.responses[0][0] == 200


async def test_django_paths_refuse_large_bodies_on_the_headers(
    plane: Any, deployed: Deployed, make_member: Any
) -> None:
    app = plane()
    huge = {"content-length": str(HUGE), "content-type": "multipart/form-data; boundary=x"}
    upload = "/api/v1/models/alpha/iris/versions"
    status, headers, content, asked = await headers_only("asgi", app, "POST", "/accounts/login/", huge)
    assert (status, json.loads(content)["error"]["code"], asked) == (413, "too_large", False)
    assert headers["connection"] == "close"
    status, headers, content, asked = await headers_only("asgi", app, "POST", upload, huge)  # anonymous
    assert (status, json.loads(content)["error"]["code"], asked) == (401, "not_authenticated", False)
    assert headers["connection"] == "close"
    status, _, content, asked = await headers_only("asgi", app, "POST", upload, {**huge, **deployed.auth()})
    assert (status, json.loads(content)["error"]["code"], asked) == (403, "permission_denied", False)  # a viewer
    outsider = {**huge, **deployed.auth(deployed.outsider)}
    status, _, content, asked = await headers_only("asgi", app, "POST", upload, outsider)
    assert (status, json.loads(content)["error"]["code"], asked) == (404, "not_found", False)
    # A developer's body goes on to Django (which reads it, and refuses this one as no model file).
    developer = await sync_to_async(make_member)(team=deployed.model.team, role=Role.DEVELOPER, username="uploader")
    body = b"--x\r\n" + b"y" * (3 * 1024**2) + b"\r\n--x--\r\n"
    headers = {"content-type": "multipart/form-data; boundary=x", "authorization": f"Bearer {developer.token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        response = await http.post(upload, content=body, headers=headers)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("threshold", [0, 10**9], ids=["off-loop", "in-place"])
async def test_nan_and_infinity_bodies_decode_the_same_off_the_loop(
    threshold: int, client: httpx.AsyncClient, deployed: Deployed, settings: Any
) -> None:
    settings.MODELDECK_OFFLOOP_DECODE_BYTES = threshold
    decoding.decoding_stop()  # no helper processes yet: the first body over the threshold starts them
    x = np.array([[np.nan, 1.0, np.inf, -np.inf], [0.5, -1.5, 2.0, 0.25]], dtype=np.float32)
    body = json.dumps({"signature_name": "serving_default", "instances": x.tolist()}).encode()
    assert b"NaN" in body and b"-Infinity" in body
    response = await client.post("/v1/models/iris-public:predict", content=body)
    assert response.status_code == 200, response.text
    predictions = np.asarray(json.loads(response.content)["predictions"], dtype=np.float32)
    np.testing.assert_allclose(predictions, deployed.expected(1, x), rtol=1e-6, equal_nan=True)
    # NaN and Infinity inside strings are text, not numbers.
    v2 = json.loads(infer_body())
    v2["id"] = "NaN, Infinity and -Infinity"
    v2["inputs"][0]["data"][0] = float("nan")
    response = await client.post(PUBLIC, content=json.dumps(v2).encode())
    assert response.status_code == 200, response.text
    assert json.loads(response.content)["id"] == "NaN, Infinity and -Infinity"
    assert (decoding._pool is not None) == (threshold == 0)  # decoded in the helper processes, or in place
    # A refusal from the helper process keeps its status and message.
    response = await client.post(PUBLIC, content=b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "da')
    assert response.status_code == 400
    assert json.loads(response.content)["error"].startswith("the request body is not valid JSON")


def test_a_protocol_error_crosses_back_from_a_decoding_process_whole() -> None:
    error = pickle.loads(pickle.dumps(ProtocolError("no such thing", 415, {"x-why": "test"})))  # noqa: S301  # our own bytes
    assert (type(error), error.message, error.status, error.headers) == (
        ProtocolError,
        "no such thing",
        415,
        {"x-why": "test"},
    )


def test_a_real_server_answers_refusals_before_the_body_and_closes(deployed: Deployed) -> None:
    with asgi_server() as url:
        host, port = url.removeprefix("http://").split(":")
        # As the findings: 60 MB to a private endpoint, 1 GiB to the upload route, anonymous, body never sent.
        for target, length in (("/v2/models/iris/infer", 60 * 1024**2), ("/api/v1/models/alpha/iris/versions", HUGE)):
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(f"POST {target} HTTP/1.1\r\nhost: t\r\ncontent-length: {length}\r\n\r\n".encode())
                answer = b""
                while chunk := sock.recv(65536):  # ends when the server closes the connection
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 401 "), answer
            assert b"connection: close" in answer.lower()
