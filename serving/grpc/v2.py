"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), as thin adapters over serving.core.

Each method does what its HTTP twin in serving.views does, with the same rules and messages: authentication before
anything is said about a name, the release's pick (canary split included) when no version is named, batching,
shadow copies and drift as over HTTP. Refusals are gRPC status codes (serving.grpc.calls). The methods tritonclient
calls only when asked (model config, statistics, the repository, shared memory) are not registered: gRPC answers
them UNIMPLEMENTED by itself.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc

from serving import core
from serving.core import (
    SERVER_NAME,
    SERVER_VERSION,
    caller_is_team,
    endpoint_resolve,
    infer,
    live_versions,
    measure,
    version_described,
    version_resolve,
)
from serving.grpc.calls import Received, budget, grpc_answer, grpc_request, sized, tensors_decode, unary
from serving.grpc.generated import grpc_service_pb2 as pb
from serving.grpc.v2_tensors import infer_request_decode, infer_response_encode
from serving.outage import DatabaseUnavailable
from serving.protocols import v2
from serving.protocols.errors import ProtocolError
from serving.request import Request
from serving.router import router_get

SERVICE = "inference.GRPCInferenceService"
EXTENSIONS = ["binary_tensor_data"]


def _method(name: str) -> str:
    return f"/{SERVICE}/{name}"


def _params(name: str, version: str) -> dict[str, str]:
    # An empty version is the endpoint's release, as a V2 path without /versions/.
    return {"name": name, "version": version} if version else {"name": name}


async def server_live(message: pb.ServerLiveRequest, context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
    return pb.ServerLiveResponse(live=True)


async def server_ready(message: pb.ServerReadyRequest, context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
    router = router_get()
    if not router.ready:
        router.start()
    # As over HTTP: ready once the releases were read; one team's model that cannot load is never the server's.
    return pb.ServerReadyResponse(ready=router.ready)


async def server_metadata(
    message: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS)


async def model_metadata(
    message: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
) -> pb.ModelMetadataResponse:
    async def answer(request: Request) -> pb.ModelMetadataResponse:
        route = await endpoint_resolve(request)
        version = version_described(route, request)
        body = v2.v2_model_metadata(
            name=route.endpoint,
            versions=live_versions(route),
            platform=v2.PLATFORMS.get(version.key.format, version.key.format),
            signature=version.key.signature,
        )
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=body["name"],
            versions=body["versions"],
            platform=body["platform"],
            inputs=[tensor(**spec) for spec in body["inputs"]],
            outputs=[tensor(**spec) for spec in body["outputs"]],
        )

    request = grpc_request(context, _method("ModelMetadata"), _params(message.name, message.version))
    return await grpc_answer(context, request, answer)


async def model_ready(message: pb.ModelReadyRequest, context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
    async def answer(request: Request) -> pb.ModelReadyResponse:
        try:
            route = await endpoint_resolve(request)
        except DatabaseUnavailable:
            raise
        except ProtocolError as exc:
            # Not ready (told to its own team only, as over HTTP): the answer is ready=false, as Triton's.
            if exc.status == 503:
                return pb.ModelReadyResponse(ready=False)
            raise
        if "version" in request.params:
            version_resolve(route, request)
            return pb.ModelReadyResponse(ready=True)
        # An earlier release still serves, but the live one could not be loaded: its team is told, nobody else.
        broken = router_get().state.broken.get(route.endpoint)
        if broken is not None and await caller_is_team(request, broken.team_id):
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    request = grpc_request(context, _method("ModelReady"), _params(message.name, message.version))
    return await grpc_answer(context, request, answer)


async def _infer(request: Request, received: Received) -> pb.ModelInferResponse:
    message: pb.ModelInferRequest = received.message
    route = await endpoint_resolve(request)
    version, picked = version_resolve(route, request)
    measure(request, route, version, None)
    parsed = await tensors_decode(request, received.size, infer_request_decode, message, version.key.signature)
    measure(request, route, version, parsed.inputs)
    outputs = await infer(route, version, picked, parsed.inputs, request.protocol)
    return infer_response_encode(
        model_name=route.endpoint,
        model_version=str(version.key.number),
        request=parsed,
        outputs=outputs,
        raw=bool(message.raw_input_contents),
    )


async def model_infer(received: Received, context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
    message = received.message
    request = grpc_request(context, _method("ModelInfer"), _params(message.model_name, message.model_version))
    return await grpc_answer(context, request, lambda request: _infer(request, received))


async def model_stream_infer(
    messages: AsyncIterator[Received], context: grpc.aio.ServicerContext
) -> AsyncIterator[pb.ModelStreamInferResponse]:
    """Answer each request of the stream in order; a refused one is an `error_message` and the stream goes on
    (as Triton does), each request counted in monitoring on its own."""
    async for received in messages:
        message = received.message
        request = grpc_request(context, _method("ModelStreamInfer"), _params(message.model_name, message.model_version))
        started = time.perf_counter()
        status = 200
        try:
            answer = pb.ModelStreamInferResponse(infer_response=await _infer(request, received))
        except ProtocolError as exc:
            status = exc.status
            answer = pb.ModelStreamInferResponse(error_message=exc.message)
        except Exception as exc:  # noqa: BLE001 -- any bug still gets an answer, the stream goes on
            refusal = core.unexpected_error(request, exc)
            status = refusal.status
            answer = pb.ModelStreamInferResponse(error_message=refusal.message)
        budget.release(request)
        core.record(request, status, time.perf_counter() - started)
        yield answer


def v2_handlers() -> list[grpc.GenericRpcHandler]:
    """The V2 service's methods, for grpc.aio.Server.add_generic_rpc_handlers (the stubs have no _pb2_grpc)."""
    methods = {
        "ServerLive": unary(server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
        "ServerReady": unary(server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
        "ServerMetadata": unary(server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse),
        "ModelMetadata": unary(model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
        "ModelReady": unary(model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
        "ModelInfer": unary(model_infer, pb.ModelInferRequest, pb.ModelInferResponse, keep_size=True),
        "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(
            model_stream_infer,
            request_deserializer=sized(pb.ModelInferRequest.FromString),
            response_serializer=pb.ModelStreamInferResponse.SerializeToString,
        ),
    }
    return [grpc.method_handlers_generic_handler(SERVICE, methods)]
