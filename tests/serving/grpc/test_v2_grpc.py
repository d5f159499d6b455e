"""KServe V2 over gRPC: tritonclient.grpc (sync and aio, with their defaults) against the real server, answered as
over HTTP: the same outputs, the same authentication rules, the same refusal messages, as gRPC status codes."""

from __future__ import annotations

import time
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from asgiref.sync import sync_to_async
from django.db import connections
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from deployments.services import release_promote
from monitoring.recorder import recorder
from serving.router import router_get
from teams.choices import Role
from teams.permissions import Actor
from tests.serving.conftest import Deployed
from tests.serving.grpc.conftest import grpc_serving

pytestmark = pytest.mark.django_db(transaction=True)

X = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5) / 4


def token(deployed: Deployed, member: Any = None) -> dict[str, str]:
    # gRPC metadata keys are lower-case.
    return {"authorization": f"Bearer {(member or deployed.dev).token}"}


def x_input(array: np.ndarray = X, datatype: str = "FP32") -> triton.InferInput:
    infer_input = triton.InferInput("x", list(array.shape), datatype)
    infer_input.set_data_from_numpy(array)
    return infer_input


def refusal(call: Any) -> tuple[str, str]:
    """The gRPC status code and message tritonclient raised for `call`."""
    with pytest.raises(InferenceServerException) as caught:
        call()
    return str(caught.value.status()), str(caught.value.message())


async def http_infer(deployed: Deployed, body: dict[str, Any], name: str = "iris") -> httpx.Response:
    """The same request over HTTP (JSON), in process."""
    from config.asgi import application

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t") as http:
        response = await http.post(f"/v2/models/{name}/infer", json=body, headers=token(deployed))
    await sync_to_async(connections.close_all, thread_sensitive=True)()
    return response


def test_sync_client_health_metadata_and_infer_with_defaults(deployed: Deployed, grpc_target: str) -> None:
    client = triton.InferenceServerClient(url=grpc_target)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata(as_json=True)["name"] == "modeldeck"
    assert client.is_model_ready("iris", headers=token(deployed))
    assert client.is_model_ready("iris", model_version="1", headers=token(deployed))
    metadata = client.get_model_metadata("iris", headers=token(deployed), as_json=True)
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnx_onnxv1"
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}]

    result = client.infer("iris", [x_input()], headers=token(deployed), request_id="req-7")
    np.testing.assert_allclose(result.as_numpy("probs"), deployed.expected(1, X), rtol=1e-6)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("iris", "1", "req-7")
    assert len(response.raw_output_contents) == 1  # raw in, raw out: what tritonclient reads

    named = client.infer(
        "iris", [x_input()], model_version="1", outputs=[triton.InferRequestedOutput("probs")], headers=token(deployed)
    )
    np.testing.assert_array_equal(named.as_numpy("probs"), result.as_numpy("probs"))
    client.close()


async def test_aio_client_gets_exactly_what_http_gets(deployed: Deployed, grpc_target: str) -> None:
    client = triton_aio.InferenceServerClient(url=grpc_target)
    try:
        assert await client.is_server_ready()
        assert await client.is_model_ready("iris", headers=token(deployed))
        result = await client.infer("iris", [x_input()], headers=token(deployed))
    finally:
        await client.close()
    http = await http_infer(
        deployed, {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
    )
    assert http.status_code == 200, http.text
    from_http = np.array(http.json()["outputs"][0]["data"], dtype=np.float32).reshape(3, 3)
    np.testing.assert_array_equal(result.as_numpy("probs"), from_http)


def test_typed_contents_are_answered_in_typed_contents(deployed: Deployed, grpc_target: str) -> None:
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="iris-public", id="typed")
        tensor = request.inputs.add(name="x", datatype="FP32", shape=[3, 4])
        tensor.contents.fp32_contents.extend(X.ravel().tolist())
        response = stub.ModelInfer(request)
    assert not response.raw_output_contents
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape), response.id) == ("probs", "FP32", [3, 3], "typed")
    probs = np.array(output.contents.fp32_contents, dtype=np.float32).reshape(3, 3)
    np.testing.assert_allclose(probs, deployed.expected(1, X), rtol=1e-6)


def test_authentication_follows_the_http_rules(deployed: Deployed, grpc_target: str) -> None:
    client = triton.InferenceServerClient(url=grpc_target)
    # The public endpoint needs no token.
    assert client.infer("iris-public", [x_input()]).as_numpy("probs").shape == (3, 3)
    no_token = refusal(lambda: client.infer("iris", [x_input()]))
    bad_token = refusal(lambda: client.infer("iris", [x_input()], headers={"authorization": "Bearer nope"}))
    assert no_token[0] == bad_token[0] == "StatusCode.UNAUTHENTICATED"
    # Without a valid token an unknown name is refused as a private one: names cannot be probed.
    assert refusal(lambda: client.infer("nothing", [x_input()]))[0] == "StatusCode.UNAUTHENTICATED"
    # Another team's endpoint is answered exactly as a name that does not exist.
    other = refusal(lambda: client.infer("iris", [x_input()], headers=token(deployed, deployed.outsider)))
    assert other == ("StatusCode.NOT_FOUND", "endpoint 'iris' not found")
    missing = refusal(lambda: client.infer("nothing", [x_input()], headers=token(deployed)))
    assert missing == ("StatusCode.NOT_FOUND", "endpoint 'nothing' not found")
    assert refusal(lambda: client.is_model_ready("iris"))[0] == "StatusCode.UNAUTHENTICATED"
    assert refusal(lambda: client.get_model_metadata("iris", headers=token(deployed, deployed.outsider)))[0] == (
        "StatusCode.NOT_FOUND"
    )
    client.close()


@pytest.mark.parametrize(
    ("array", "datatype", "json_input"),
    [
        (np.zeros((3, 5), np.float32), "FP32", {"shape": [3, 5], "datatype": "FP32", "data": [0.0] * 15}),
        (X.astype(np.float64), "FP64", {"shape": [3, 4], "datatype": "FP64", "data": [0.0] * 12}),
    ],
    ids=["shape", "datatype"],
)
async def test_a_wrong_input_gets_the_http_message(
    deployed: Deployed, grpc_target: str, array: np.ndarray, datatype: str, json_input: dict[str, Any]
) -> None:
    client = triton_aio.InferenceServerClient(url=grpc_target)
    try:
        with pytest.raises(InferenceServerException) as caught:
            await client.infer("iris", [x_input(array, datatype)], headers=token(deployed))
    finally:
        await client.close()
    http = await http_infer(deployed, {"inputs": [{"name": "x", **json_input}]})
    assert http.status_code == 400
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert caught.value.message() == http.json()["error"]
    assert "x" in http.json()["error"]


def test_unknown_version_and_output_are_refused(deployed: Deployed, grpc_target: str) -> None:
    client = triton.InferenceServerClient(url=grpc_target)
    assert refusal(lambda: client.infer("iris", [x_input()], model_version="9", headers=token(deployed))) == (
        "StatusCode.NOT_FOUND",
        "version '9' of 'iris' is not deployed (live: 1)",
    )
    unknown_output = [triton.InferRequestedOutput("nope")]
    assert refusal(lambda: client.infer("iris", [x_input()], outputs=unknown_output, headers=token(deployed))) == (
        "StatusCode.INVALID_ARGUMENT",
        "unexpected output 'nope'; the model's outputs are: probs",
    )
    client.close()


def test_a_message_over_the_size_limit_is_resource_exhausted(deployed: Deployed, settings: Any) -> None:
    settings.MODELDECK_MAX_INFER_BYTES = 4096
    with grpc_serving() as target:
        client = triton.InferenceServerClient(url=target)
        big = np.zeros((512, 4), np.float32)  # 8 KiB of raw contents
        code, _message = refusal(lambda: client.infer("iris", [x_input(big)], headers=token(deployed)))
        assert code == "StatusCode.RESOURCE_EXHAUSTED"
        # Under the limit the same server answers.
        assert client.infer("iris", [x_input()], headers=token(deployed)).as_numpy("probs").shape == (3, 3)
        client.close()


def test_calls_past_the_in_flight_budget_are_unavailable(deployed: Deployed, settings: Any) -> None:
    """The bytes of calls not yet answered count against MODELDECK_MAX_INFLIGHT_BODY_BYTES, as HTTP bodies do; a call
    that would pass it is refused UNAVAILABLE with retry-after, and answered calls hold nothing."""
    from serving.grpc import calls

    settings.MODELDECK_MAX_INFLIGHT_BODY_BYTES = 1024
    with grpc_serving() as target:
        client = triton.InferenceServerClient(url=target)
        big = np.zeros((128, 4), np.float32)  # 2 KiB of raw contents
        with pytest.raises(InferenceServerException) as caught:
            client.infer("iris", [x_input(big)], headers=token(deployed))
        assert str(caught.value.status()) == "StatusCode.UNAVAILABLE"
        assert "too many request bodies at once; retry shortly" in str(caught.value.message())
        assert client.infer("iris", [x_input()], headers=token(deployed)).as_numpy("probs").shape == (3, 3)
        # A call over the budget, one of the wrong shape and the answered ones all gave their bytes back.
        refusal(lambda: client.infer("iris", [x_input(X[:, :3])], headers=token(deployed)))
        assert calls.budget.inflight == 0
        client.close()


def test_large_messages_are_decoded_off_the_loop(deployed: Deployed, settings: Any, monkeypatch: Any) -> None:
    """A message over MODELDECK_OFFLOOP_DECODE_BYTES is turned into arrays on a thread, not on the server's loop."""
    import threading

    from serving.grpc import v2, v2_tensors

    threads: list[str] = []

    def decode(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return v2_tensors.infer_request_decode(*args)

    monkeypatch.setattr(v2, "infer_request_decode", decode)
    settings.MODELDECK_OFFLOOP_DECODE_BYTES = 4096
    with grpc_serving() as target:
        client = triton.InferenceServerClient(url=target)
        small = client.infer("iris", [x_input()], headers=token(deployed)).as_numpy("probs")
        big = np.tile(X, (200, 1))  # 600 rows: 9.6 KiB
        answer = client.infer("iris", [x_input(big)], headers=token(deployed)).as_numpy("probs")
        client.close()
    assert threads[0] == "grpc-test-server"  # the loop's own thread (tests/serving/grpc/conftest.py)
    assert threads[1] != "grpc-test-server"
    np.testing.assert_allclose(small, deployed.expected(1, X), rtol=1e-6)
    np.testing.assert_allclose(answer, deployed.expected(1, big), rtol=1e-6)


def test_canary_split_and_named_versions(deployed: Deployed, grpc_target: str, make_member: Any) -> None:
    releaser = Actor(user=make_member(team=deployed.dev.team, role=Role.DEVELOPER, username="releaser").user)
    release_promote(actor=releaser, endpoint=deployed.private, version=deployed.versions[2], canary_percent=50)
    deadline = time.monotonic() + 10
    while router_get().state.routes["iris"].canary is None:
        assert time.monotonic() < deadline, "the router never saw the canary"
        time.sleep(0.05)
    client = triton.InferenceServerClient(url=grpc_target)
    served = {
        client.infer("iris", [x_input()], headers=token(deployed)).get_response().model_version for _ in range(40)
    }
    assert served == {"1", "2"}
    named = client.infer("iris", [x_input()], model_version="2", headers=token(deployed))
    assert named.get_response().model_version == "2"
    np.testing.assert_allclose(named.as_numpy("probs"), deployed.expected(2, X), rtol=1e-6)
    client.close()


def test_inference_is_recorded_with_the_grpc_protocol(deployed: Deployed, grpc_target: str) -> None:
    recorder.swap_by_protocol()
    client = triton.InferenceServerClient(url=grpc_target)
    client.infer("iris", [x_input()], headers=token(deployed))
    refusal(lambda: client.infer("iris", [x_input(np.zeros((3, 5), np.float32))], headers=token(deployed)))
    client.close()
    window = recorder.swap_by_protocol()
    series = window[("iris", 1, "primary", "grpc")]
    assert (series.count, series.rows, series.codes) == (2, 3, {200: 1, 400: 1})
    assert not any(key[3] == "http" for key in window)


def test_a_shadow_copy_of_a_grpc_call_is_recorded_under_grpc(
    deployed: Deployed, grpc_target: str, make_member: Any
) -> None:
    releaser = Actor(user=make_member(team=deployed.dev.team, role=Role.DEVELOPER, username="releaser").user)
    release_promote(
        actor=releaser, endpoint=deployed.private, version=deployed.versions[1], shadow_version=deployed.versions[2]
    )
    deadline = time.monotonic() + 10
    while router_get().state.routes["iris"].shadow is None:
        assert time.monotonic() < deadline, "the router never saw the shadow"
        time.sleep(0.05)
    recorder.swap_by_protocol()
    client = triton.InferenceServerClient(url=grpc_target)
    assert client.infer("iris", [x_input()], headers=token(deployed)).get_response().model_version == "1"
    client.close()
    router_get().shadow.drain()
    seen: dict[tuple[str, int, str, str], int] = {}
    deadline = time.monotonic() + 5
    # The shadow's numbers reach the recorder on the server's loop, just after the copy ran.
    while ("iris", 2, "shadow", "grpc") not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
        for key, series in recorder.swap_by_protocol().items():
            seen[key] = seen.get(key, 0) + series.count
    assert seen == {("iris", 1, "primary", "grpc"): 1, ("iris", 2, "shadow", "grpc"): 1}


def test_stream_infer_answers_each_request_and_reports_errors_in_the_stream(
    deployed: Deployed, grpc_target: str
) -> None:
    answers: list[tuple[Any, Any]] = []
    client = triton.InferenceServerClient(url=grpc_target)
    client.start_stream(callback=lambda result, error: answers.append((result, error)), headers=token(deployed))
    client.async_stream_infer("iris", [x_input()], request_id="a")
    client.async_stream_infer("iris", [x_input(np.zeros((3, 5), np.float32))], request_id="b")
    client.async_stream_infer("iris", [x_input()], model_version="9")
    client.stop_stream()
    client.close()
    assert len(answers) == 3
    (ok, none), (_, shape_error), (_, version_error) = answers
    assert none is None
    np.testing.assert_allclose(ok.as_numpy("probs"), deployed.expected(1, X), rtol=1e-6)
    assert shape_error.message() == "input 'x' has shape [3, 5] but the model expects [-1, 4]"
    assert version_error.message() == "version '9' of 'iris' is not deployed (live: 1)"


def test_unserved_methods_are_unimplemented(deployed: Deployed, grpc_target: str) -> None:
    client = triton.InferenceServerClient(url=grpc_target)
    assert refusal(lambda: client.get_model_config("iris", headers=token(deployed)))[0] == "StatusCode.UNIMPLEMENTED"
    client.close()


def test_the_health_service_says_serving_once_the_router_is_ready(deployed: Deployed) -> None:
    def status(stub: health_pb2_grpc.HealthStub, service: str) -> int:
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)

    with grpc_serving(ready=False) as target, grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        services = ("", "inference.GRPCInferenceService", "tensorflow.serving.PredictionService")
        for service in services:
            assert status(stub, service) == health_pb2.HealthCheckResponse.NOT_SERVING
        router_get().start()
        deadline = time.monotonic() + 10
        while status(stub, "") != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "the health service never said SERVING"
            time.sleep(0.05)
        for service in services:
            assert status(stub, service) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as caught:
            status(stub, "nothing")
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
