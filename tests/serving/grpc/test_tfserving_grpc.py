"""TF Serving over gRPC: the official `tensorflow-serving-api` stubs and `tf.make_tensor_proto` against the real
server, answered as over REST: the same outputs, metadata and status, the same authentication rules, the same refusal
messages, as gRPC status codes (the TensorProto codec alone: test_tfserving_tensors.py)."""

from __future__ import annotations

import time
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from asgiref.sync import sync_to_async
from django.db import connections
from google.protobuf import json_format, wrappers_pb2
from tensorflow.core.framework import tensor_pb2 as tf_tensor_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from deployments.services import release_promote
from monitoring.recorder import recorder
from serving.router import router_get
from teams.choices import Role
from teams.permissions import Actor
from tests.serving.conftest import Deployed

pytestmark = pytest.mark.django_db(transaction=True)

X = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5) / 4
NEEDS_TOKEN = "missing token: send 'Authorization: Bearer <token>' with a token of the endpoint's team"
BAD_TOKEN = "invalid token: it is unknown, expired or revoked, or its user is no longer a member of its team"


def token(deployed: Deployed, member: Any = None) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {(member or deployed.dev).token}")]


def predict_request(
    name: str = "iris", x: Any = None, version: int | None = None, label: str | None = None
) -> predict_pb2.PredictRequest:
    """What TF Serving's documented client sends: a PredictRequest with tf.make_tensor_proto inputs."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(
        x if isinstance(x, tf_tensor_pb2.TensorProto) else tf.make_tensor_proto(X if x is None else x)
    )
    return request


def refusal(call: Any) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and message of a refused call."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


async def rest(method: str, path: str, deployed: Deployed, **kwargs: Any) -> httpx.Response:
    """The same question over TF Serving REST, in process."""
    from config.asgi import application

    headers = {"Authorization": f"Bearer {deployed.dev.token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t") as http:
        response = await http.request(method, path, headers=headers, **kwargs)
    await sync_to_async(connections.close_all, thread_sensitive=True)()
    return response


def from_rest(body: dict[str, Any], message: Any) -> Any:
    """A REST answer read into the official message it is the JSON form of."""
    return json_format.ParseDict(body, message)


# --- PredictionService/Predict --------------------------------------------------------------------------------------


def test_predict_by_release_version_and_label(deployed: Deployed, grpc_target: str) -> None:
    with grpc.insecure_channel(grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        answers = [
            stub.Predict(request, metadata=token(deployed), timeout=10)
            for request in (predict_request(), predict_request(version=1), predict_request(label="stable"))
        ]
    for response in answers:
        assert list(response.outputs) == ["probs"]
        probs = response.outputs["probs"]
        assert probs.dtype == tf.float32.as_datatype_enum
        assert [dim.size for dim in probs.tensor_shape.dim] == [3, 3]
        assert len(probs.tensor_content) == 9 * 4  # raw little-endian, as TF Serving answers
        np.testing.assert_allclose(tf.make_ndarray(probs), deployed.expected(1, X), rtol=1e-6)
        spec = response.model_spec
        assert (spec.name, spec.version.value, spec.signature_name) == ("iris", 1, "serving_default")


async def test_predict_answers_exactly_what_rest_answers(deployed: Deployed, grpc_target: str) -> None:
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = await stub.Predict(predict_request(), metadata=token(deployed), timeout=10)
    http = await rest("POST", "/v1/models/iris:predict", deployed, json={"inputs": X.tolist()})
    assert http.status_code == 200, http.text
    np.testing.assert_array_equal(
        tf.make_ndarray(response.outputs["probs"]), np.asarray(http.json()["outputs"], dtype=np.float32)
    )


def test_typed_values_tensor_content_and_one_value_for_the_shape(deployed: Deployed, grpc_target: str) -> None:
    typed = tf_tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum)
    typed.tensor_shape.dim.add(size=3)
    typed.tensor_shape.dim.add(size=4)
    typed.float_val.extend(X.ravel().tolist())
    raw = tf.make_tensor_proto(X)
    assert raw.tensor_content and not raw.float_val
    constant = tf.make_tensor_proto(0.5, dtype=tf.float32, shape=[2, 4])
    assert list(constant.float_val) == [0.5]  # one value for eight elements: TensorFlow's constant form
    with grpc.insecure_channel(grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        from_typed = stub.Predict(predict_request(x=typed), metadata=token(deployed), timeout=10)
        from_raw = stub.Predict(predict_request(x=raw), metadata=token(deployed), timeout=10)
        from_constant = stub.Predict(predict_request(x=constant), metadata=token(deployed), timeout=10)
    np.testing.assert_array_equal(
        tf.make_ndarray(from_typed.outputs["probs"]), tf.make_ndarray(from_raw.outputs["probs"])
    )
    np.testing.assert_allclose(
        tf.make_ndarray(from_constant.outputs["probs"]),
        deployed.expected(1, np.full((2, 4), 0.5, np.float32)),
        rtol=1e-6,
    )


def test_output_filter(deployed: Deployed, grpc_target: str) -> None:
    with grpc.insecure_channel(grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_request()
        request.output_filter.append("probs")
        assert list(stub.Predict(request, metadata=token(deployed), timeout=10).outputs) == ["probs"]
        request.output_filter[:] = ["nope"]
        assert refusal(lambda: stub.Predict(request, metadata=token(deployed), timeout=10)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "unexpected output 'nope'; the model's outputs are: probs",
        )


def test_canary_label_and_versions(deployed: Deployed, grpc_target: str, make_member: Any) -> None:
    with grpc.insecure_channel(grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        status = model_service_pb2_grpc.ModelServiceStub(channel)
        assert refusal(lambda: stub.Predict(predict_request(label="canary"), metadata=token(deployed))) == (
            grpc.StatusCode.NOT_FOUND,
            "label 'canary' of 'iris' is not assigned (labels: 'stable')",
        )
        assert refusal(lambda: stub.Predict(predict_request(version=2), metadata=token(deployed))) == (
            grpc.StatusCode.NOT_FOUND,
            "version '2' of 'iris' is not deployed (live: 1)",
        )

        releaser = Actor(user=make_member(team=deployed.dev.team, role=Role.DEVELOPER, username="releaser").user)
        release_promote(actor=releaser, endpoint=deployed.private, version=deployed.versions[2], canary_percent=5)
        deadline = time.monotonic() + 10
        while router_get().state.routes["iris"].canary is None:
            assert time.monotonic() < deadline, "the router never saw the canary"
            time.sleep(0.05)

        for request in (predict_request(label="canary"), predict_request(version=2)):
            response = stub.Predict(request, metadata=token(deployed), timeout=10)
            assert response.model_spec.version.value == 2
            np.testing.assert_allclose(tf.make_ndarray(response.outputs["probs"]), deployed.expected(2, X), rtol=1e-6)
        assert not np.allclose(deployed.expected(1, X), deployed.expected(2, X))
        stable = stub.Predict(predict_request(label="stable"), metadata=token(deployed), timeout=10)
        assert stable.model_spec.version.value == 1

        every = status.GetModelStatus(status_request(), metadata=token(deployed), timeout=10)
        assert [(v.version, v.state) for v in every.model_version_status] == [
            (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
            (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
        ]
        canary = status.GetModelStatus(status_request(label="canary"), metadata=token(deployed), timeout=10)
        assert [v.version for v in canary.model_version_status] == [2]


# --- GetModelMetadata and GetModelStatus ------------------------------------------------------------------------------


def metadata_request(name: str = "iris", fields: tuple[str, ...] = ("signature_def",), **spec: Any) -> Any:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
    request.model_spec.name = name
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    if "label" in spec:
        request.model_spec.version_label = spec["label"]
    return request


def status_request(name: str = "iris", **spec: Any) -> Any:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if "version" in spec:
        request.model_spec.version.CopyFrom(wrappers_pb2.Int64Value(value=spec["version"]))
    if "label" in spec:
        request.model_spec.version_label = spec["label"]
    return request


async def test_metadata_and_status_are_the_rest_answers(deployed: Deployed, grpc_target: str) -> None:
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        model = model_service_pb2_grpc.ModelServiceStub(channel)
        metadata = [
            await prediction.GetModelMetadata(request, metadata=token(deployed), timeout=10)
            for request in (metadata_request(), metadata_request(version=1), metadata_request(label="stable"))
        ]
        statuses = [
            await model.GetModelStatus(request, metadata=token(deployed), timeout=10)
            for request in (status_request(), status_request(version=1), status_request(label="stable"))
        ]
    rest_metadata = (await rest("GET", "/v1/models/iris/metadata", deployed)).json()
    rest_status = (await rest("GET", "/v1/models/iris", deployed)).json()
    assert rest_metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["x"]["dtype"] == (
        "DT_FLOAT"
    )
    for response in metadata:
        assert (response.model_spec.name, response.model_spec.version.value) == ("iris", 1)
        assert list(response.metadata) == ["signature_def"]
        packed = response.metadata["signature_def"]
        assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
        signatures = get_model_metadata_pb2.SignatureDefMap()
        assert packed.Unpack(signatures)
        assert signatures == from_rest(
            rest_metadata["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap()
        )
    for response in statuses:
        assert response == from_rest(rest_status, get_model_status_pb2.GetModelStatusResponse())
        (only,) = response.model_version_status
        assert (only.version, only.state, only.status.error_code, only.status.error_message) == (
            1,
            get_model_status_pb2.ModelVersionStatus.AVAILABLE,
            0,
            "",
        )


def test_metadata_and_status_refusals(deployed: Deployed, grpc_target: str) -> None:
    with grpc.insecure_channel(grpc_target) as channel:
        prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        model = model_service_pb2_grpc.ModelServiceStub(channel)
        assert refusal(lambda: prediction.GetModelMetadata(metadata_request(fields=()), metadata=token(deployed))) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "GetModelMetadataRequest must specify at least one metadata_field",
        )
        assert refusal(
            lambda: prediction.GetModelMetadata(metadata_request(fields=("other",)), metadata=token(deployed))
        ) == (grpc.StatusCode.INVALID_ARGUMENT, "Metadata field other is not supported")
        # Authentication comes before any check of the request.
        assert refusal(lambda: prediction.GetModelMetadata(metadata_request(fields=()))) == (
            grpc.StatusCode.UNAUTHENTICATED,
            NEEDS_TOKEN,
        )
        assert refusal(lambda: model.GetModelStatus(status_request(version=9), metadata=token(deployed))) == (
            grpc.StatusCode.NOT_FOUND,
            "version '9' of 'iris' is not deployed (live: 1)",
        )
        assert refusal(lambda: model.GetModelStatus(status_request(label="nightly"), metadata=token(deployed))) == (
            grpc.StatusCode.NOT_FOUND,
            "label 'nightly' of 'iris' is not assigned (labels: 'stable')",
        )


# --- authentication and refusals ----------------------------------------------------------------------------------


def test_authentication_follows_the_rest_rules(deployed: Deployed, grpc_target: str) -> None:
    with grpc.insecure_channel(grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        model = model_service_pb2_grpc.ModelServiceStub(channel)
        # The public endpoint needs no token.
        public = stub.Predict(predict_request("iris-public"), timeout=10)
        np.testing.assert_allclose(tf.make_ndarray(public.outputs["probs"]), deployed.expected(1, X), rtol=1e-6)
        assert refusal(lambda: stub.Predict(predict_request())) == (grpc.StatusCode.UNAUTHENTICATED, NEEDS_TOKEN)
        bad = [("authorization", "Bearer nope")]
        assert refusal(lambda: stub.Predict(predict_request(), metadata=bad)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            BAD_TOKEN,
        )
        # Without a valid token an unknown name is refused as a private one: names cannot be probed.
        assert refusal(lambda: stub.Predict(predict_request("nothing")))[0] == grpc.StatusCode.UNAUTHENTICATED
        # Another team's endpoint is answered exactly as a name that does not exist.
        outsider = token(deployed, deployed.outsider)
        for name in ("iris", "nothing"):
            assert refusal(lambda name=name: stub.Predict(predict_request(name), metadata=outsider)) == (
                grpc.StatusCode.NOT_FOUND,
                f"endpoint '{name}' not found",
            )
        assert refusal(lambda: stub.GetModelMetadata(metadata_request(), metadata=outsider)) == (
            grpc.StatusCode.NOT_FOUND,
            "endpoint 'iris' not found",
        )
        assert refusal(lambda: model.GetModelStatus(status_request(), metadata=outsider)) == (
            grpc.StatusCode.NOT_FOUND,
            "endpoint 'iris' not found",
        )


def _proto(dtype: Any, shape: list[int], **fields: Any) -> Any:
    tensor = tf_tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum, **fields)
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    return tensor


@pytest.mark.parametrize(
    ("tensor", "rest_inputs"),
    [
        (tf.make_tensor_proto(np.zeros((1, 3), np.float32)), {"x": [[1, 2, 3]]}),
        (tf.make_tensor_proto(np.zeros((4,), np.float32)), {"x": [1, 2, 3, 4]}),
        (None, {}),
    ],
    ids=["shape", "rank", "missing"],
)
async def test_a_wrong_input_gets_the_rest_message(
    deployed: Deployed, grpc_target: str, tensor: Any, rest_inputs: dict[str, Any]
) -> None:
    request = predict_request()
    if tensor is None:
        del request.inputs["x"]
    else:
        request.inputs["x"].CopyFrom(tensor)
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Predict(request, metadata=token(deployed), timeout=10)
    http = await rest("POST", "/v1/models/iris:predict", deployed, json={"inputs": rest_inputs})
    assert http.status_code == 400
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == http.json()["error"]
    assert "'x'" in http.json()["error"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r.inputs["x"].CopyFrom(tf.make_tensor_proto(X.astype(np.float64))),
            "input 'x' has dtype DT_DOUBLE but the model expects DT_FLOAT",
        ),
        (
            lambda r: r.inputs["y"].CopyFrom(tf.make_tensor_proto(X)),
            "unexpected input 'y'; the model expects: x",
        ),
        (
            lambda r: setattr(r.model_spec, "signature_name", "other"),
            'Serving signature name: "other" not found in signature def; this model has only "serving_default"',
        ),
        (
            lambda r: r.inputs["x"].CopyFrom(_proto(tf.float32, [3, 4], tensor_content=b"\0" * 44)),
            "input 'x' has shape [3, 4] of DT_FLOAT (48 bytes) but its tensor_content has 44 bytes",
        ),
        (
            lambda r: r.inputs["x"].CopyFrom(_proto(tf.float32, [3, 4], float_val=[1.0, 2.0])),
            "input 'x' has shape [3, 4] (12 elements) but its float_val holds 2 elements "
            "(one value fills the shape; otherwise one per element)",
        ),
        (
            lambda r: r.inputs["x"].CopyFrom(_proto(tf.float32, [3, 4], float_val=[1.0], double_val=[1.0])),
            "input 'x' is DT_FLOAT, whose elements go in float_val or tensor_content, but it has double_val",
        ),
        (
            lambda r: r.inputs["x"].CopyFrom(_proto(tf.float32, [3, -1], float_val=[1.0])),
            "input 'x' has an invalid shape [3, -1]; it must be a list of non-negative integers",
        ),
    ],
    ids=["dtype", "unknown-input", "signature", "content-size", "value-count", "two-fields", "negative-dim"],
)
def test_bad_predict_requests_are_invalid_argument(
    deployed: Deployed, grpc_target: str, change: Any, message: str
) -> None:
    request = predict_request()
    change(request)
    with grpc.insecure_channel(grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert refusal(lambda: stub.Predict(request, metadata=token(deployed), timeout=10)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            message,
        )


def test_methods_not_served(deployed: Deployed, grpc_target: str) -> None:
    with grpc.insecure_channel(grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        model = model_service_pb2_grpc.ModelServiceStub(channel)
        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.name = "iris"
        classify.input.example_list.examples.add()
        assert refusal(lambda: stub.Classify(classify, metadata=token(deployed))) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "'Classify' needs a tf.Example classification/regression signature; use 'Predict'",
        )
        regress = regression_pb2.RegressionRequest()
        regress.model_spec.name = "iris"
        assert refusal(lambda: stub.Regress(regress, metadata=token(deployed)))[0] == grpc.StatusCode.INVALID_ARGUMENT
        # As every method that names an endpoint: the token first.
        assert refusal(lambda: stub.Regress(regress)) == (grpc.StatusCode.UNAUTHENTICATED, NEEDS_TOKEN)
        code, message = refusal(lambda: stub.MultiInference(inference_pb2.MultiInferenceRequest()))
        assert (code, message.split(":")[0]) == (grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not served")
        code, message = refusal(lambda: model.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest()))
        assert (code, message.split(":")[0]) == (
            grpc.StatusCode.UNIMPLEMENTED,
            "HandleReloadConfigRequest is not served",
        )


def test_predict_is_recorded_with_the_grpc_protocol(deployed: Deployed, grpc_target: str) -> None:
    recorder.swap_by_protocol()
    with grpc.insecure_channel(grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(predict_request(), metadata=token(deployed), timeout=10)
        refusal(lambda: stub.Predict(predict_request(x=np.zeros((3, 5), np.float32)), metadata=token(deployed)))
    series = recorder.swap_by_protocol()[("iris", 1, "primary", "grpc")]
    assert (series.count, series.rows, series.codes) == (2, 3, {200: 1, 400: 1})
