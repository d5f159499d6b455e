"""The inference APIs over HTTP: Open Inference Protocol (V2), TF Serving REST and MLflow scoring, with exact JSON.

Every answer is checked against what onnxruntime itself computes for the version that served it (`deployed.expected`),
and every error against its exact protocol body.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django.db.backends import utils as db_utils

from deployments.services import release_promote
from serving.asgi import DataPlane, Receive, Scope, Send
from serving.auth import token_cache
from serving.router import router_get
from serving.views import ROUTES
from teams.choices import Role
from teams.permissions import Actor
from tests.conftest import Member
from tests.serving.conftest import Deployed
from tests.serving.fastpath_transport import FastPathTransport

pytestmark = pytest.mark.django_db(transaction=True)

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
ROWS = X.tolist()
FLAT = X.ravel().tolist()

V2_INFER = "/v2/models/iris/infer"
NOT_FOUND = {"error": "endpoint 'iris' not found"}
NEEDS_TOKEN = "missing token: send 'Authorization: Bearer <token>' with a token of the endpoint's team"
BAD_TOKEN = "invalid token: it is unknown, expired or revoked, or its user is no longer a member of its team"

V2_METADATA = {
    "name": "iris",
    "versions": ["1"],
    "platform": "onnx_onnxv1",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}],
}
TF_STATUS_V1 = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
TF_STATUS_V2 = {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}


def _tf_tensor(name: str, dims: list[str]) -> dict[str, Any]:
    return {
        "dtype": "DT_FLOAT",
        "tensor_shape": {"dim": [{"size": size, "name": ""} for size in dims], "unknown_rank": False},
        "name": name,
    }


TF_METADATA_V1 = {
    "model_spec": {"name": "iris", "signature_name": "", "version": "1"},
    "metadata": {
        "signature_def": {
            "signature_def": {
                "serving_default": {
                    "inputs": {"x": _tf_tensor("serving_default_x:0", ["-1", "4"])},
                    "outputs": {"probs": _tf_tensor("StatefulPartitionedCall:0", ["-1", "3"])},
                    "method_name": "tensorflow/serving/predict",
                }
            }
        }
    },
}


def v2_body(data: Any = None, shape: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    """A JSON V2 inference request for input x (X, flat, by default)."""
    tensor = {"name": "x", "shape": shape or [2, 4], "datatype": "FP32", "data": FLAT if data is None else data}
    return {"inputs": [tensor], **extra}


def v2_output(body: dict[str, Any]) -> np.ndarray:
    """The JSON output tensor "probs" of a V2 response, shaped as the response says."""
    (output,) = body["outputs"]
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


def assert_v2_infer(response: httpx.Response, deployed: Deployed, number: int, request_id: str | None = None) -> None:
    """A 200 V2 JSON response from version `number` with exactly the protocol's fields, values as onnxruntime's."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-modeldeck-version"] == str(number)
    body = response.json()
    data = body["outputs"][0].pop("data")
    expected_body: dict[str, Any] = {"model_name": "iris", "model_version": str(number)}
    if request_id is not None:
        expected_body["id"] = request_id
    expected_body["outputs"] = [{"name": "probs", "datatype": "FP32", "shape": [2, 3]}]
    assert body == expected_body
    np.testing.assert_allclose(np.asarray(data, dtype=np.float32), deployed.expected(number, X).ravel(), rtol=1e-6)


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    """A V2 / TF Serving error: the status and exactly `{"error": message}`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": message}


async def refresh() -> None:
    """Bring the router's snapshot up to the committed releases (it reads them on asgiref's thread)."""
    await sync_to_async(router_get().refresh, thread_sensitive=True)()


@pytest.fixture
def builder(make_member: Any, deployed: Deployed) -> Member:
    """A developer of alpha, allowed to change the endpoints' releases."""
    member: Member = make_member(team=deployed.dev.team, role=Role.DEVELOPER, username="builder2")
    return member


async def start_canary(deployed: Deployed, builder: Member, percent: int) -> None:
    """Send `percent` of the private endpoint's traffic to v2 and wait for the router to follow."""
    await sync_to_async(release_promote, thread_sensitive=True)(
        actor=Actor(user=builder.user), endpoint=deployed.private, version=deployed.versions[2], canary_percent=percent
    )
    await refresh()


# --- Open Inference Protocol: server --------------------------------------------------------------------------


async def test_v2_server_live(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/health/live")
    assert response.status_code == 200
    assert response.json() == {"live": True}


async def test_v2_server_ready_once_the_router_has_refreshed(
    client: httpx.AsyncClient, deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without its follower thread the router never refreshes: not ready, in the same JSON shape.
    monkeypatch.setattr(router_get(), "start", lambda: None)
    response = await client.get("/v2/health/ready")
    assert response.status_code == 503
    assert response.json() == {"ready": False}

    await refresh()
    response = await client.get("/v2/health/ready")
    assert response.status_code == 200
    assert response.json() == {"ready": True}


async def test_v2_server_metadata(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2")
    assert response.status_code == 200
    assert response.json() == {
        "name": "modeldeck",
        "version": importlib.metadata.version("modeldeck"),
        "extensions": ["binary_tensor_data"],
    }


# --- Open Inference Protocol: model metadata and readiness -----------------------------------------------------


@pytest.mark.parametrize("path", ["/v2/models/iris", "/v2/models/iris/versions/1"])
async def test_v2_model_metadata(client: httpx.AsyncClient, deployed: Deployed, path: str) -> None:
    response = await client.get(path, headers=deployed.auth())
    assert response.status_code == 200, response.text
    assert response.json() == V2_METADATA


async def test_v2_model_metadata_lists_the_canary_version(
    client: httpx.AsyncClient, deployed: Deployed, builder: Member
) -> None:
    await start_canary(deployed, builder, 10)
    response = await client.get("/v2/models/iris/versions/2", headers=deployed.auth())
    assert response.status_code == 200, response.text
    assert response.json() == {**V2_METADATA, "versions": ["1", "2"]}


@pytest.mark.parametrize("path", ["/v2/models/iris/ready", "/v2/models/iris/versions/1/ready"])
async def test_v2_model_ready(client: httpx.AsyncClient, deployed: Deployed, path: str) -> None:
    response = await client.get(path, headers=deployed.auth())
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "iris", "ready": True}


async def test_v2_model_metadata_and_ready_of_a_version_not_deployed(
    client: httpx.AsyncClient, deployed: Deployed
) -> None:
    response = await client.get("/v2/models/iris/versions/2/ready", headers=deployed.auth())
    assert_error(response, 404, "version '2' of 'iris' is not deployed (live: 1)")
    response = await client.get("/v2/models/iris/versions/2", headers=deployed.auth())
    assert_error(response, 404, "version '2' of 'iris' is not deployed (live: 1)")


# --- Open Inference Protocol: inference ------------------------------------------------------------------------


@pytest.mark.parametrize("path", [V2_INFER, "/v2/models/iris/versions/1/infer"])
@pytest.mark.parametrize("data", [FLAT, ROWS], ids=["flat", "nested"])
async def test_v2_infer_json(client: httpx.AsyncClient, deployed: Deployed, path: str, data: list[Any]) -> None:
    response = await client.post(path, json=v2_body(data, id="req-42"), headers=deployed.auth())
    assert_v2_infer(response, deployed, 1, request_id="req-42")


async def test_v2_infer_without_id_has_no_id(client: httpx.AsyncClient, deployed: Deployed) -> None:
    response = await client.post(V2_INFER, json=v2_body(), headers=deployed.auth())
    assert_v2_infer(response, deployed, 1)


async def test_v2_infer_named_output_as_binary(client: httpx.AsyncClient, deployed: Deployed) -> None:
    # The model has one output: naming it (with per-output binary_data) is the only subset there is.
    request = v2_body(outputs=[{"name": "probs", "parameters": {"binary_data": True}}])
    response = await client.post(V2_INFER, json=request, headers=deployed.auth())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    assert json.loads(response.content[:length]) == {
        "model_name": "iris",
        "model_version": "1",
        "outputs": [{"name": "probs", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}}],
    }
    probs = np.frombuffer(response.content[length:], dtype="<f4").reshape(2, 3)
    np.testing.assert_allclose(probs, deployed.expected(1, X), rtol=1e-6)


async def test_v2_infer_named_output_as_json(client: httpx.AsyncClient, deployed: Deployed) -> None:
    request = v2_body(outputs=[{"name": "probs"}], id="subset")
    response = await client.post(V2_INFER, json=request, headers=deployed.auth())
    assert_v2_infer(response, deployed, 1, request_id="subset")


async def test_v2_infer_binary_tensor_extension(client: httpx.AsyncClient, deployed: Deployed) -> None:
    raw = X.astype("<f4").tobytes()
    header = json.dumps(
        {
            "id": "bin",
            "inputs": [
                {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    response = await client.post(
        V2_INFER,
        content=header + raw,
        headers={
            **deployed.auth(),
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-modeldeck-version"] == "1"
    length = int(response.headers["inference-header-content-length"])
    assert json.loads(response.content[:length]) == {
        "model_name": "iris",
        "model_version": "1",
        "id": "bin",
        "outputs": [{"name": "probs", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}}],
    }
    assert len(response.content) == length + 24
    probs = np.frombuffer(response.content[length:], dtype="<f4").reshape(2, 3)
    np.testing.assert_allclose(probs, deployed.expected(1, X), rtol=1e-6)


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        (
            {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": FLAT}]},
            "input 'x' has datatype FP64 but the model expects FP32",
        ),
        (
            {"inputs": [{"name": "x", "shape": [2, 2, 2], "datatype": "FP32", "data": FLAT}]},
            "input 'x' has shape [2, 2, 2] but the model expects [-1, 4]",
        ),
        (
            {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": FLAT}]},
            "input 'x' has shape [3, 4] (12 elements) but its data holds 8 elements",
        ),
        (
            {"inputs": [{"name": "y", "shape": [2, 4], "datatype": "FP32", "data": FLAT}]},
            "unexpected input 'y'; the model expects: x",
        ),
        (
            v2_body(outputs=[{"name": "logits"}]),
            "unexpected output 'logits'; the model's outputs are: probs",
        ),
        ({"inputs": []}, "missing input 'x'; the model expects: x"),
        ({}, "the request has no 'inputs'"),
    ],
    ids=["datatype", "rank", "element-count", "unknown-input", "unknown-output", "no-input", "no-inputs-key"],
)
async def test_v2_infer_refuses_bad_requests(
    client: httpx.AsyncClient, deployed: Deployed, request_body: dict[str, Any], message: str
) -> None:
    response = await client.post(V2_INFER, json=request_body, headers=deployed.auth())
    assert_error(response, 400, message)


async def test_v2_infer_malformed_json(client: httpx.AsyncClient, deployed: Deployed) -> None:
    response = await client.post(
        V2_INFER, content=b'{"inputs": [', headers={**deployed.auth(), "Content-Type": "application/json"}
    )
    assert_error(response, 400, "the request body is not valid JSON: Expecting value: line 1 column 13 (char 12)")


async def test_v2_infer_binary_data_without_the_header_length(client: httpx.AsyncClient, deployed: Deployed) -> None:
    header = json.dumps(v2_body()).encode()
    response = await client.post(V2_INFER, content=header + b"\x00\x01", headers=deployed.auth())
    assert response.status_code == 400
    assert response.json() == {
        "error": f"the request body is not valid JSON: Extra data: line 1 column {len(header) + 1} (char {len(header)})"
        "; a body with binary tensor data needs the Inference-Header-Content-Length header"
    }


async def test_v2_infer_binary_header_errors(client: httpx.AsyncClient, deployed: Deployed) -> None:
    raw = X.astype("<f4").tobytes()
    header = json.dumps(
        {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]}
    ).encode()
    binary = {**deployed.auth(), "Content-Type": "application/octet-stream"}

    response = await client.post(
        V2_INFER, content=header + raw, headers={**binary, "Inference-Header-Content-Length": "x"}
    )
    assert_error(response, 400, "Inference-Header-Content-Length must be a number of bytes")

    length = {"Inference-Header-Content-Length": str(len(header))}
    response = await client.post(V2_INFER, content=header + raw[:16], headers={**binary, **length})
    assert_error(response, 400, "input 'x' has shape [2, 4] of FP32 (32 bytes) but parameters.binary_data_size is 16")

    too_long = {"Inference-Header-Content-Length": str(len(header) + len(raw) + 1)}
    response = await client.post(V2_INFER, content=header + raw, headers={**binary, **too_long})
    assert_error(
        response,
        400,
        f"Inference-Header-Content-Length is {len(header) + len(raw) + 1} but the request body has "
        f"{len(header) + len(raw)} bytes",
    )


async def test_v2_infer_unknown_endpoint(client: httpx.AsyncClient, deployed: Deployed) -> None:
    response = await client.post("/v2/models/nope/infer", json=v2_body(), headers=deployed.auth())
    assert_error(response, 404, "endpoint 'nope' not found")


async def test_v2_infer_version_not_deployed(client: httpx.AsyncClient, deployed: Deployed) -> None:
    for version in ("2", "7", "latest"):
        response = await client.post(
            f"/v2/models/iris/versions/{version}/infer", json=v2_body(), headers=deployed.auth()
        )
        assert_error(response, 404, f"version '{version}' of 'iris' is not deployed (live: 1)")


async def test_v2_infer_private_endpoint_needs_a_token(client: httpx.AsyncClient, deployed: Deployed) -> None:
    response = await client.post(V2_INFER, json=v2_body())
    assert_error(response, 401, NEEDS_TOKEN)
    assert response.headers["www-authenticate"] == 'Bearer realm="modeldeck"'

    response = await client.post(V2_INFER, json=v2_body(), headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_error(response, 401, "malformed Authorization header: send 'Authorization: Bearer <token>'")
    assert response.headers["www-authenticate"] == 'Bearer realm="modeldeck"'


async def test_v2_infer_other_teams_token_is_told_not_found(client: httpx.AsyncClient, deployed: Deployed) -> None:
    theirs = await client.post(V2_INFER, json=v2_body(), headers=deployed.auth(deployed.outsider))
    unknown = await client.post("/v2/models/iris-nope/infer", json=v2_body(), headers=deployed.auth())
    assert theirs.status_code == 404
    assert theirs.json() == NOT_FOUND
    # Indistinguishable from a name that does not exist, apart from the name itself.
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "endpoint 'iris-nope' not found"}
    assert theirs.headers.keys() == unknown.headers.keys()
    assert "www-authenticate" not in theirs.headers


@pytest.mark.parametrize("token", ["garbage", "mdk_00000000" + "A" * 43])
async def test_v2_infer_garbage_token_is_unauthenticated(
    client: httpx.AsyncClient, deployed: Deployed, token: str
) -> None:
    # Never "not found": a wrong token is told it is wrong, for a name that exists and for one that does not.
    for path in (V2_INFER, "/v2/models/nope/infer"):
        response = await client.post(path, json=v2_body(), headers={"Authorization": f"Bearer {token}"})
        assert_error(response, 401, BAD_TOKEN)
        assert response.headers["www-authenticate"] == 'Bearer realm="modeldeck", error="invalid_token"'


async def test_v2_metadata_needs_a_token_too(client: httpx.AsyncClient, deployed: Deployed) -> None:
    response = await client.get("/v2/models/iris")
    assert_error(response, 401, NEEDS_TOKEN)
    response = await client.get("/v2/models/iris", headers=deployed.auth(deployed.outsider))
    assert_error(response, 404, "endpoint 'iris' not found")


async def test_v2_infer_wrong_method(client: httpx.AsyncClient, deployed: Deployed) -> None:
    response = await client.get(V2_INFER, headers=deployed.auth())
    assert_error(response, 405, "GET is not allowed on /v2/models/iris/infer; use POST")
    response = await client.post("/v2/models/iris", headers=deployed.auth())
    assert_error(response, 405, "POST is not allowed on /v2/models/iris; use GET")


async def test_v2_unknown_path(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/models/iris/explain")
    assert_error(response, 404, "no inference API at /v2/models/iris/explain")


# --- request body limit (DataPlane reads MODELDECK_MAX_INFER_BYTES once, when built) ---------------------------


async def _not_here(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError(f"the data plane passed {scope['path']} on")


@pytest.fixture(params=["asgi", "fastpath"])
async def small_client(settings: Any, request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a data plane built with a 600-byte body limit (as ASGI, and through its HTTP protocol)."""
    settings.MODELDECK_MAX_INFER_BYTES = 600
    plane = DataPlane(_not_here, ROUTES)
    assert plane.max_body == 600
    transport = httpx.ASGITransport(app=plane) if request.param == "asgi" else FastPathTransport(plane)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
    router_get().stop()
    from django.db import connections

    await sync_to_async(connections.close_all, thread_sensitive=True)()


async def test_body_over_the_limit(small_client: httpx.AsyncClient, deployed: Deployed) -> None:
    fits = await small_client.post(V2_INFER, json=v2_body(), headers=deployed.auth())
    assert_v2_infer(fits, deployed, 1)

    big = v2_body(id="x" * 600)
    response = await small_client.post(V2_INFER, json=big, headers=deployed.auth())
    assert_error(response, 413, "the request body is larger than 600 bytes")

    response = await small_client.post("/v1/models/iris:predict", json={"instances": [ROWS[0]] * 50})
    assert_error(response, 413, "the request body is larger than 600 bytes")


async def test_streamed_body_over_the_limit(small_client: httpx.AsyncClient, deployed: Deployed) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit must hold while the body is read.
        for _ in range(10):
            yield b" " * 100

    response = await small_client.post(V2_INFER, content=chunks(), headers=deployed.auth())
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "the request body is larger than 600 bytes")


# --- TF Serving REST ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/models/iris:predict", "/v1/models/iris/versions/1:predict", "/v1/models/iris/labels/stable:predict"]
)
async def test_tfserving_predict_rows(client: httpx.AsyncClient, deployed: Deployed, path: str) -> None:
    response = await client.post(path, json={"instances": ROWS}, headers=deployed.auth())
    assert response.status_code == 200, response.text
    assert response.headers["x-modeldeck-version"] == "1"
    body = response.json()
    assert body.keys() == {"predictions"}
    assert np.shape(body["predictions"]) == (2, 3)
    np.testing.assert_allclose(np.asarray(body["predictions"], dtype=np.float32), deployed.expected(1, X), rtol=1e-6)


@pytest.mark.parametrize("inputs", [ROWS, {"x": ROWS}], ids=["bare", "named"])
async def test_tfserving_predict_columnar(client: httpx.AsyncClient, deployed: Deployed, inputs: Any) -> None:
    response = await client.post("/v1/models/iris:predict", json={"inputs": inputs}, headers=deployed.auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.keys() == {"outputs"}
    assert np.shape(body["outputs"]) == (2, 3)
    np.testing.assert_allclose(np.asarray(body["outputs"], dtype=np.float32), deployed.expected(1, X), rtol=1e-6)


async def test_tfserving_canary_label_without_a_canary(client: httpx.AsyncClient, deployed: Deployed) -> None:
    response = await client.post(
        "/v1/models/iris/labels/canary:predict", json={"instances": ROWS}, headers=deployed.auth()
    )
    assert_error(response, 404, "label 'canary' of 'iris' is not assigned (labels: 'stable')")


async def test_a_version_or_label_just_released_is_served_at_once(
    client: httpx.AsyncClient, deployed: Deployed, builder: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No follower thread: only the request path can notice the release (as in a process the change did not go through).
    monkeypatch.setattr(router_get(), "start", lambda: None)
    await refresh()
    await sync_to_async(release_promote, thread_sensitive=True)(
        actor=Actor(user=builder.user), endpoint=deployed.private, version=deployed.versions[2], canary_percent=5
    )
    for path in ("/v1/models/iris/labels/canary:predict", "/v1/models/iris/versions/2:predict"):
        response = await client.post(path, json={"instances": ROWS}, headers=deployed.auth())
        assert response.status_code == 200, (path, response.text)
        assert response.headers["x-modeldeck-version"] == "2"
    # A version that is not live is still refused, after the snapshot was found current.
    response = await client.post(
        "/v1/models/iris/versions/7:predict", json={"instances": ROWS}, headers=deployed.auth()
    )
    assert_error(response, 404, "version '7' of 'iris' is not deployed (live: 1, 2)")


async def test_tfserving_canary_label_answers_from_the_canary(
    client: httpx.AsyncClient, deployed: Deployed, builder: Member
) -> None:
    await start_canary(deployed, builder, 5)
    response = await client.post(
        "/v1/models/iris/labels/canary:predict", json={"instances": ROWS}, headers=deployed.auth()
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-modeldeck-version"] == "2"
    predictions = np.asarray(response.json()["predictions"], dtype=np.float32)
    np.testing.assert_allclose(predictions, deployed.expected(2, X), rtol=1e-6)
    # The two seeded versions really differ, so the header is not the only evidence.
    assert not np.allclose(deployed.expected(1, X), deployed.expected(2, X))

    response = await client.post(
        "/v1/models/iris/versions/2:predict", json={"instances": ROWS}, headers=deployed.auth()
    )
    assert response.headers["x-modeldeck-version"] == "2"
    response = await client.post(
        "/v1/models/iris/labels/stable:predict", json={"instances": ROWS}, headers=deployed.auth()
    )
    assert response.headers["x-modeldeck-version"] == "1"
    np.testing.assert_allclose(
        np.asarray(response.json()["predictions"], dtype=np.float32), deployed.expected(1, X), rtol=1e-6
    )

    response = await client.get("/v1/models/iris", headers=deployed.auth())
    assert response.json() == {"model_version_status": [TF_STATUS_V1, TF_STATUS_V2]}
    response = await client.get("/v1/models/iris/labels/canary", headers=deployed.auth())
    assert response.json() == {"model_version_status": [TF_STATUS_V2]}


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
async def test_tfserving_non_finite_floats(client: httpx.AsyncClient, deployed: Deployed, value: str) -> None:
    body = b'{"instances": [[' + value.encode() + b", 1, 2, 3]]}"
    response = await client.post(
        "/v1/models/iris:predict", content=body, headers={**deployed.auth(), "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    predictions = json.loads(response.content)["predictions"]
    assert any(math.isnan(p) for p in predictions[0])
    x = np.array([[float(value), 1, 2, 3]], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(predictions, dtype=np.float32), deployed.expected(1, x), rtol=1e-6)


async def test_tfserving_status(client: httpx.AsyncClient, deployed: Deployed) -> None:
    for path in ("/v1/models/iris", "/v1/models/iris/versions/1", "/v1/models/iris/labels/stable"):
        response = await client.get(path, headers=deployed.auth())
        assert response.status_code == 200, response.text
        assert response.json() == {"model_version_status": [TF_STATUS_V1]}


@pytest.mark.parametrize(
    "path",
    ["/v1/models/iris/metadata", "/v1/models/iris/versions/1/metadata", "/v1/models/iris/labels/stable/metadata"],
)
async def test_tfserving_metadata(client: httpx.AsyncClient, deployed: Deployed, path: str) -> None:
    response = await client.get(path, headers=deployed.auth())
    assert response.status_code == 200, response.text
    assert response.json() == TF_METADATA_V1


@pytest.mark.parametrize("op", ["classify", "regress"])
async def test_tfserving_classify_and_regress_are_refused(
    client: httpx.AsyncClient, deployed: Deployed, op: str
) -> None:
    response = await client.post(f"/v1/models/iris:{op}", json={"examples": [{"x": 1.0}]}, headers=deployed.auth())
    assert_error(response, 400, f"'{op}' needs a tf.Example classification/regression signature; use ':predict'")


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (
            b'{"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]}',
            400,
            ("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"),
        ),
        (b'{"examples": []}', 400, "Missing 'inputs' or 'instances' key"),
        (b'{"instances": [[1, 2, 3]]}', 400, "input 'x' has shape [1, 3] but the model expects [-1, 4]"),
        (b'{"instances": [[1, 2, "3", 4]]}', 400, "input 'x' expects FP32 numbers but got \"3\""),
        (b'{"instances": []}', 400, "No values in 'instances' array"),
        (
            b"{instances}",
            400,
            "JSON Parse error: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (
            b'{"signature_name": "other", "instances": [[1, 2, 3, 4]]}',
            400,
            ('Serving signature name: "other" not found in signature def; this model has only "serving_default"'),
        ),
    ],
    ids=["both-keys", "no-key", "shape", "string-element", "empty", "malformed", "signature"],
)
async def test_tfserving_predict_refuses_bad_requests(
    client: httpx.AsyncClient, deployed: Deployed, content: bytes, status: int, message: str
) -> None:
    response = await client.post(
        "/v1/models/iris:predict", content=content, headers={**deployed.auth(), "Content-Type": "application/json"}
    )
    assert_error(response, status, message)


async def test_tfserving_errors(client: httpx.AsyncClient, deployed: Deployed) -> None:
    response = await client.post("/v1/models/nope:predict", json={"instances": ROWS}, headers=deployed.auth())
    assert_error(response, 404, "endpoint 'nope' not found")
    response = await client.post("/v1/models/iris:predict", json={"instances": ROWS})
    assert_error(response, 401, NEEDS_TOKEN)
    assert response.headers["www-authenticate"] == 'Bearer realm="modeldeck"'
    response = await client.post(
        "/v1/models/iris/versions/3:predict", json={"instances": ROWS}, headers=deployed.auth()
    )
    assert_error(response, 404, "version '3' of 'iris' is not deployed (live: 1)")
    response = await client.get("/v1/models/iris:predict", headers=deployed.auth())
    assert_error(response, 405, "GET is not allowed on /v1/models/iris:predict; use POST")
    response = await client.get("/v1/models/iris/labels/nightly", headers=deployed.auth())
    assert_error(response, 404, "label 'nightly' of 'iris' is not assigned (labels: 'stable')")


# --- MLflow scoring ---------------------------------------------------------------------------------------------

INVOCATIONS = "/mlflow/iris/invocations"


@pytest.mark.parametrize(
    "request_body",
    [
        {"dataframe_split": {"columns": ["x"], "data": [[row] for row in ROWS]}},
        {"dataframe_split": {"index": [0, 1], "columns": ["x"], "data": [[row] for row in ROWS]}},
        {"dataframe_split": {"data": ROWS}},
        {"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": ROWS}},
        {"dataframe_records": [{"x": row} for row in ROWS]},
        {"dataframe_records": [dict(zip("abcd", row, strict=True)) for row in ROWS]},
        {"instances": ROWS},
        {"instances": [{"x": row} for row in ROWS]},
        {"inputs": ROWS},
        {"inputs": {"x": ROWS}, "params": {}},
    ],
    ids=[
        "split-named",
        "split-index",
        "split-unnamed",
        "split-four-columns",
        "records-named",
        "records-four-columns",
        "instances",
        "instances-named",
        "inputs",
        "inputs-named",
    ],
)
async def test_mlflow_invocations(client: httpx.AsyncClient, deployed: Deployed, request_body: dict[str, Any]) -> None:
    response = await client.post(INVOCATIONS, json=request_body, headers=deployed.auth())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body.keys() == {"predictions"}
    assert np.shape(body["predictions"]) == (2, 3)
    np.testing.assert_allclose(np.asarray(body["predictions"], dtype=np.float32), deployed.expected(1, X), rtol=1e-6)


async def test_mlflow_invocations_csv(client: httpx.AsyncClient, deployed: Deployed) -> None:
    csv_body = ",a,b,c,d\n" + "".join(f"{i}," + ",".join(repr(v) for v in row) + "\n" for i, row in enumerate(ROWS))
    response = await client.post(
        INVOCATIONS, content=csv_body.encode(), headers={**deployed.auth(), "Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    predictions = np.asarray(response.json()["predictions"], dtype=np.float32)
    np.testing.assert_allclose(predictions, deployed.expected(1, X), rtol=1e-6)


async def test_mlflow_unsupported_content_type(client: httpx.AsyncClient, deployed: Deployed) -> None:
    response = await client.post(
        INVOCATIONS, content=b"5.1,3.5,1.4,0.2", headers={**deployed.auth(), "Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == (
        "This predictor only supports the following content types: application/json, text/csv. Got 'text/plain'."
    )


async def test_mlflow_two_input_fields(client: httpx.AsyncClient, deployed: Deployed) -> None:
    response = await client.post(INVOCATIONS, json={"instances": ROWS, "inputs": ROWS}, headers=deployed.auth())
    assert response.status_code == 400
    assert response.json() == {
        "error_code": "BAD_REQUEST",
        "message": "The input must be a JSON dictionary with exactly one of the input fields "
        "{'dataframe_split', 'dataframe_records', 'instances', 'inputs'}. "
        "Received dictionary with input fields: ['instances', 'inputs']. "
        "IMPORTANT: The MLflow Model scoring protocol has changed in MLflow version 2.0; "
        "MLflow 1.x request bodies (a bare pandas DataFrame in JSON) are no longer accepted.",
    }


async def test_mlflow_columns_that_fit_no_input(client: httpx.AsyncClient, deployed: Deployed) -> None:
    request_body = {"dataframe_split": {"columns": ["a", "b", "c"], "data": [row[:3] for row in ROWS]}}
    response = await client.post(INVOCATIONS, json=request_body, headers=deployed.auth())
    assert response.status_code == 400
    assert response.json() == {
        "error_code": "BAD_REQUEST",
        "message": 'dataframe_split columns ["a", "b", "c"] do not match the model\'s input: send one column '
        "named 'x', or 4 columns that form the rows of 'x' (shape [-1, 4])",
    }


async def test_mlflow_ping_and_health(client: httpx.AsyncClient, deployed: Deployed) -> None:
    for path in ("/mlflow/iris/ping", "/mlflow/iris/health"):
        response = await client.get(path, headers=deployed.auth())
        assert response.status_code == 200, response.text
        assert response.content == b"\n"
    response = await client.get("/mlflow/iris/version", headers=deployed.auth())
    assert response.status_code == 200
    assert response.text == importlib.metadata.version("modeldeck")


async def test_mlflow_errors(client: httpx.AsyncClient, deployed: Deployed) -> None:
    response = await client.post("/mlflow/nope/invocations", json={"instances": ROWS}, headers=deployed.auth())
    assert response.status_code == 404
    assert response.json() == {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "endpoint 'nope' not found"}
    response = await client.get("/mlflow/nope/ping", headers=deployed.auth())
    assert response.status_code == 404
    assert response.json() == {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "endpoint 'nope' not found"}

    response = await client.post(INVOCATIONS, json={"instances": ROWS})
    assert response.status_code == 401
    assert response.json() == {"error_code": "UNAUTHENTICATED", "message": NEEDS_TOKEN}
    assert response.headers["www-authenticate"] == 'Bearer realm="modeldeck"'

    response = await client.get(INVOCATIONS, headers=deployed.auth())
    assert response.status_code == 405
    assert response.json() == {
        "error_code": "BAD_REQUEST",
        "message": "GET is not allowed on /mlflow/iris/invocations; use POST",
    }


# --- traffic split, public endpoints, the hot path -------------------------------------------------------------


async def test_canary_takes_its_share_of_unversioned_traffic(
    client: httpx.AsyncClient, deployed: Deployed, builder: Member
) -> None:
    await start_canary(deployed, builder, 30)
    expected = {number: deployed.expected(number, X) for number in (1, 2)}
    served = {1: 0, 2: 0}
    for _ in range(400):
        response = await client.post(V2_INFER, json=v2_body(), headers=deployed.auth())
        assert response.status_code == 200, response.text
        number = int(response.headers["x-modeldeck-version"])
        assert response.json()["model_version"] == str(number)
        np.testing.assert_allclose(v2_output(response.json()), expected[number], rtol=1e-6)
        served[number] += 1
    assert sum(served.values()) == 400
    # 30% of 400 is 120 with a standard deviation of about 9: 80..160 is more than four of them either way.
    assert 80 <= served[2] <= 160, served


async def test_public_endpoint_needs_no_token(client: httpx.AsyncClient, deployed: Deployed) -> None:
    for headers in ({}, deployed.auth(deployed.outsider), deployed.auth()):
        response = await client.post("/v2/models/iris-public/infer", json=v2_body(), headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["model_name"] == "iris-public"
        np.testing.assert_allclose(v2_output(response.json()), deployed.expected(1, X), rtol=1e-6)

    response = await client.post("/v1/models/iris-public:predict", json={"instances": ROWS})
    assert response.status_code == 200, response.text
    response = await client.post("/mlflow/iris-public/invocations", json={"instances": ROWS})
    assert response.status_code == 200, response.text
    response = await client.get("/v2/models/iris-public")
    assert response.json() == {**V2_METADATA, "name": "iris-public"}


@pytest.fixture
def all_queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement any thread runs (django_assert_num_queries sees only this thread's connection)."""
    seen: list[str] = []
    original = db_utils.CursorWrapper._execute_with_wrappers  # type: ignore[attr-defined]

    def counting(self: Any, sql: str, params: Any, many: bool, executor: Any) -> Any:
        seen.append(sql)
        return original(self, sql, params, many, executor)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute_with_wrappers", counting)
    return seen


async def test_hot_path_runs_no_query(
    client: httpx.AsyncClient, deployed: Deployed, all_queries: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = token_cache()
    # A slow machine must not outlive the token's cached answer mid-test: the re-check would be a (correct) query.
    monkeypatch.setattr(tokens, "ttl", 3600.0)
    lookups = tokens.lookups
    warm = await client.post(V2_INFER, json=v2_body(), headers=deployed.auth())
    assert warm.status_code == 200
    # The warm-up did read: the releases (refresh on the first miss) and the token.
    assert all_queries
    assert tokens.lookups == lookups + 1

    all_queries.clear()
    for path, request_body in [
        (V2_INFER, v2_body()),
        ("/v1/models/iris:predict", {"instances": ROWS}),
        (INVOCATIONS, {"inputs": ROWS}),
        ("/v2/models/iris/versions/1/infer", v2_body()),
    ] * 5:
        response = await client.post(path, json=request_body, headers=deployed.auth())
        assert response.status_code == 200, response.text
    assert all_queries == []
    assert tokens.lookups == lookups + 1
