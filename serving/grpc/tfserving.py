"""TensorFlow Serving over gRPC (`tensorflow.serving.PredictionService`, `.ModelService`), as thin adapters over
serving.core.

Each method does what its REST twin in serving.views does (`tfserving_predict`, `tfserving_metadata`,
`tfserving_status`, `tfserving_unsupported`), with the same rules and messages: authentication before anything is said
about a name, `model_spec.version` or `.version_label` as REST's /versions/ and /labels/ paths, the release's pick
(canary split included) when neither is given, batching, shadow copies and drift. Metadata and status are the REST
answers themselves, read into the protobuf messages, so the two transports cannot drift apart. Refusals are gRPC
status codes (serving.grpc.calls).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import json_format

from serving.core import endpoint_resolve, infer, live_versions, measure, version_described, version_resolve
from serving.grpc.calls import Received, grpc_answer, grpc_request, tensors_decode, unary
from serving.grpc.generated.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)
from serving.grpc.tfserving_tensors import predict_request_decode, predict_response_encode
from serving.protocols import tfserving
from serving.protocols.errors import ProtocolError
from serving.request import Request

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
SIGNATURE_DEF = "signature_def"


def _params(spec: model_pb2.ModelSpec) -> dict[str, str]:
    """The core's params of a ModelSpec: the endpoint, and the version or label it names (an empty label names none,
    as a REST path without /labels/)."""
    params = {"name": spec.name}
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        params["version"] = str(spec.version.value)
    elif choice == "version_label" and spec.version_label:
        params["label"] = spec.version_label
    return params


def _request(context: grpc.aio.ServicerContext, service: str, method: str, spec: model_pb2.ModelSpec) -> Request:
    return grpc_request(context, f"/{service}/{method}", _params(spec))


async def predict(received: Received, context: grpc.aio.ServicerContext) -> predict_pb2.PredictResponse:
    message: predict_pb2.PredictRequest = received.message

    async def answer(request: Request) -> predict_pb2.PredictResponse:
        route = await endpoint_resolve(request)
        version, picked = version_resolve(route, request)
        measure(request, route, version, None)
        signature = version.key.signature
        inputs, names = await tensors_decode(request, received.size, predict_request_decode, message, signature)
        measure(request, route, version, inputs)
        outputs = await infer(route, version, picked, inputs, request.protocol)
        return predict_response_encode(name=route.endpoint, version=version.key.number, outputs=outputs, names=names)

    return await grpc_answer(context, _request(context, PREDICTION_SERVICE, "Predict", message.model_spec), answer)


async def get_model_metadata(
    message: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.aio.ServicerContext
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    async def answer(request: Request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        route = await endpoint_resolve(request)
        version = version_described(route, request)
        # TF Serving's own checks and words (get_model_metadata_impl.cc), once the caller may know the endpoint.
        if not message.metadata_field:
            raise ProtocolError("GetModelMetadataRequest must specify at least one metadata_field")
        for field in message.metadata_field:
            if field != SIGNATURE_DEF:
                raise ProtocolError(f"Metadata field {field} is not supported")
        body = tfserving.tfserving_metadata(
            name=route.endpoint, version=str(version.key.number), signature=version.key.signature
        )
        signatures = json_format.ParseDict(body["metadata"][SIGNATURE_DEF], get_model_metadata_pb2.SignatureDefMap())
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = route.endpoint
        response.model_spec.version.value = version.key.number
        # type_url "type.googleapis.com/tensorflow.serving.SignatureDefMap", as TF Serving packs it.
        response.metadata[SIGNATURE_DEF].Pack(signatures)
        return response

    request = _request(context, PREDICTION_SERVICE, "GetModelMetadata", message.model_spec)
    return await grpc_answer(context, request, answer)


async def get_model_status(
    message: get_model_status_pb2.GetModelStatusRequest, context: grpc.aio.ServicerContext
) -> get_model_status_pb2.GetModelStatusResponse:
    async def answer(request: Request) -> get_model_status_pb2.GetModelStatusResponse:
        route = await endpoint_resolve(request)
        if request.params.keys() & {"version", "label"}:
            version, _ = version_resolve(route, request)
            versions = [str(version.key.number)]
        else:
            versions = live_versions(route)
        return json_format.ParseDict(
            tfserving.tfserving_status(versions), get_model_status_pb2.GetModelStatusResponse()
        )

    request = _request(context, MODEL_SERVICE, "GetModelStatus", message.model_spec)
    return await grpc_answer(context, request, answer)


def _needs_examples(method: str) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    """Classify / Regress: refused as over REST, once the caller may know the endpoint."""

    async def behaviour(message: Any, context: grpc.aio.ServicerContext) -> Any:
        async def answer(request: Request) -> Any:
            await endpoint_resolve(request)
            raise ProtocolError(f"'{method}' needs a tf.Example classification/regression signature; use 'Predict'")

        return await grpc_answer(context, _request(context, PREDICTION_SERVICE, method, message.model_spec), answer)

    return behaviour


def _not_served(service: str, method: str, why: str) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]]:
    """A method ModelDeck does not offer: UNIMPLEMENTED with the reason, its body never decoded."""

    async def behaviour(body: bytes, context: grpc.aio.ServicerContext) -> Any:
        async def answer(request: Request) -> Any:
            raise ProtocolError(f"{method} is not served: {why}", 405)

        return await grpc_answer(context, grpc_request(context, f"/{service}/{method}", {}), answer)

    return behaviour


def tfserving_handlers() -> list[grpc.GenericRpcHandler]:
    """TF Serving's two services, for grpc.aio.Server.add_generic_rpc_handlers (the stubs have no _pb2_grpc)."""
    prediction = {
        "Predict": unary(predict, predict_pb2.PredictRequest, predict_pb2.PredictResponse, keep_size=True),
        "GetModelMetadata": unary(
            get_model_metadata,
            get_model_metadata_pb2.GetModelMetadataRequest,
            get_model_metadata_pb2.GetModelMetadataResponse,
        ),
        "Classify": unary(
            _needs_examples("Classify"),
            classification_pb2.ClassificationRequest,
            classification_pb2.ClassificationResponse,
        ),
        "Regress": unary(
            _needs_examples("Regress"), regression_pb2.RegressionRequest, regression_pb2.RegressionResponse
        ),
        "MultiInference": grpc.unary_unary_rpc_method_handler(
            _not_served(
                PREDICTION_SERVICE,
                "MultiInference",
                "it runs tf.Example classification/regression signatures, which ModelDeck's models do not have; "
                "use Predict",
            )
        ),
    }
    model = {
        "GetModelStatus": unary(
            get_model_status, get_model_status_pb2.GetModelStatusRequest, get_model_status_pb2.GetModelStatusResponse
        ),
        "HandleReloadConfigRequest": grpc.unary_unary_rpc_method_handler(
            _not_served(
                MODEL_SERVICE,
                "HandleReloadConfigRequest",
                "ModelDeck's control plane decides which versions are served; promote a release with its REST API",
            )
        ),
    }
    return [
        grpc.method_handlers_generic_handler(PREDICTION_SERVICE, prediction),
        grpc.method_handlers_generic_handler(MODEL_SERVICE, model),
    ]
