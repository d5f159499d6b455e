"""The inference APIs over HTTP: Open Inference Protocol (KServe V2 / Triton), TF Serving REST, and MLflow scoring.

Plain async functions of a `Request`; each resolves the endpoint and version from the router's snapshot (no
database), checks the token unless the endpoint is public, and checks what else the headers say (content type,
binary header length) before it reads the body (`Request.read`): a refused request is answered without it. It then
decodes with the protocol's codec (a large body in a helper process, serving.decoding), runs the model and encodes
the answer in that protocol's own shape, errors included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

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
from serving.decoding import body_decode
from serving.protocols import mlflow, tfserving, v2
from serving.protocols.errors import ProtocolError
from serving.request import Handler, Request, Response
from serving.router import router_get
from serving.runtime_cache import LoadedVersion

JSON = {"content-type": "application/json"}


def _json(status: int, payload: object, version: LoadedVersion | None = None) -> Response:
    headers = dict(JSON)
    if version is not None:
        headers["x-modeldeck-version"] = str(version.key.number)
    return Response(status, json.dumps(payload, separators=(",", ":")).encode(), headers)


def error_response(path: str, status: int, message: str) -> Response:
    """An error in the shape of the protocol the path belongs to."""
    if path.startswith("/mlflow/"):
        if status == 415:  # as MLflow's scoring server: a plain-text answer to a body it cannot read at all
            return Response(status, message.encode(), {"content-type": "text/plain; charset=utf-8"})
        code = {
            404: "RESOURCE_DOES_NOT_EXIST",
            401: "UNAUTHENTICATED",
            429: "REQUEST_LIMIT_EXCEEDED",
            500: "INTERNAL_ERROR",
            503: "TEMPORARILY_UNAVAILABLE",
        }.get(status, "BAD_REQUEST")
        return Response(status, mlflow.mlflow_error_body(message, code), dict(JSON))
    if path.startswith("/v1/"):
        return Response(status, tfserving.tfserving_error_body(message), dict(JSON))
    return Response(status, v2.v2_error_body(message), dict(JSON))


def _protocol_errors(handler: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ProtocolError as exc:
            response = error_response(request.path, exc.status, exc.message)
            if exc.headers:
                response.headers.update(exc.headers)
            return response

    wrapped.__name__ = handler.__name__
    return wrapped


# --- Open Inference Protocol ------------------------------------------------------------------------------------


async def v2_live(request: Request) -> Response:
    return _json(200, {"live": True})


async def v2_ready(request: Request) -> Response:
    router = router_get()
    if not router.ready:
        router.start()
    # Ready once the releases were read: a team's model that cannot load is that model's readiness, never the
    # server's (the container probes ask here; one tenant must not take every process out of rotation).
    return _json(200 if router.ready else 503, {"ready": router.ready})


async def v2_server_metadata(request: Request) -> Response:
    return _json(200, {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]})


@_protocol_errors
async def v2_model_metadata(request: Request) -> Response:
    route = await endpoint_resolve(request)
    version = version_described(route, request)
    body = v2.v2_model_metadata(
        name=route.endpoint,
        versions=live_versions(route),
        platform=v2.PLATFORMS.get(version.key.format, version.key.format),
        signature=version.key.signature,
    )
    return _json(200, body)


@_protocol_errors
async def v2_model_ready(request: Request) -> Response:
    route = await endpoint_resolve(request)
    if "version" in request.params:
        version_resolve(route, request)
    else:
        # An earlier release still serves, but the live one could not be loaded: its team is told, nobody else.
        broken = router_get().state.broken.get(route.endpoint)
        if broken is not None and await caller_is_team(request, broken.team_id):
            raise ProtocolError(f"endpoint '{route.endpoint}' is not ready: {broken.reason}", 503)
    return _json(200, {"name": route.endpoint, "ready": True})


@_protocol_errors
async def v2_infer(request: Request) -> Response:
    route = await endpoint_resolve(request)
    version, picked = version_resolve(route, request)
    measure(request, route, version, None)
    header_length = request.headers.get("inference-header-content-length")
    if header_length is not None and not (header_length.isascii() and header_length.isdigit()):
        raise ProtocolError("Inference-Header-Content-Length must be a number of bytes")
    json_length = int(header_length) if header_length is not None else None
    body = await request.read()
    json_size = len(body) if json_length is None else min(json_length, len(body))
    parsed = await body_decode(json_size, v2.v2_request_parse, body, version.key.signature, json_length)
    measure(request, route, version, parsed.inputs)
    outputs = await infer(route, version, picked, parsed.inputs)
    body, headers = v2.v2_response_encode(
        model_name=route.endpoint, model_version=str(version.key.number), request=parsed, outputs=outputs
    )
    headers["x-modeldeck-version"] = str(version.key.number)
    return Response(200, body, headers)


# --- TF Serving REST --------------------------------------------------------------------------------------------


@_protocol_errors
async def tfserving_status(request: Request) -> Response:
    route = await endpoint_resolve(request)
    if "version" in request.params or "label" in request.params:
        version, _ = version_resolve(route, request)
        return _json(200, tfserving.tfserving_status([str(version.key.number)]))
    return _json(200, tfserving.tfserving_status(live_versions(route)))


@_protocol_errors
async def tfserving_metadata(request: Request) -> Response:
    route = await endpoint_resolve(request)
    version = version_described(route, request)
    return _json(
        200,
        tfserving.tfserving_metadata(
            name=route.endpoint, version=str(version.key.number), signature=version.key.signature
        ),
        version,
    )


@_protocol_errors
async def tfserving_predict(request: Request) -> Response:
    route = await endpoint_resolve(request)
    version, picked = version_resolve(route, request)
    measure(request, route, version, None)
    body = await request.read()
    inputs, style = await body_decode(len(body), tfserving.tfserving_request_parse, body, version.key.signature)
    measure(request, route, version, inputs)
    outputs = await infer(route, version, picked, inputs)
    headers = {**JSON, "x-modeldeck-version": str(version.key.number)}
    return Response(200, tfserving.tfserving_response_encode(outputs, style), headers)


@_protocol_errors
async def tfserving_unsupported(request: Request) -> Response:
    await endpoint_resolve(request)
    verb = request.params.get("op", "").lstrip(":")
    raise ProtocolError(f"'{verb}' needs a tf.Example classification/regression signature; use ':predict'", 400)


# --- MLflow scoring ---------------------------------------------------------------------------------------------


@_protocol_errors
async def mlflow_ping(request: Request) -> Response:
    await endpoint_resolve(request)
    return Response(200, b"\n", {"content-type": "application/json"})


@_protocol_errors
async def mlflow_version(request: Request) -> Response:
    await endpoint_resolve(request)
    return Response(200, SERVER_VERSION.encode(), {"content-type": "text/plain"})


@_protocol_errors
async def mlflow_invocations(request: Request) -> Response:
    route = await endpoint_resolve(request)
    version, picked = route.pick(), True
    measure(request, route, version, None)
    content_type = request.headers.get("content-type")
    mlflow.mlflow_content_kind(content_type)  # 415 before the body is read
    body = await request.read()
    inputs = await body_decode(len(body), mlflow.mlflow_request_parse, body, content_type, version.key.signature)
    measure(request, route, version, inputs)
    outputs = await infer(route, version, picked, inputs)
    headers = {**JSON, "x-modeldeck-version": str(version.key.number)}
    return Response(200, mlflow.mlflow_response_encode(outputs), headers)


# --- the URL map ------------------------------------------------------------------------------------------------

_NAME = r"(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)"
_V2_MODEL = rf"^/v2/models/{_NAME}(?:/versions/(?P<version>[^/]+))?"
_TF_MODEL = rf"^/v1/models/{_NAME}(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"


def _routes() -> list[tuple[re.Pattern[str], dict[str, Handler]]]:
    # Tried in order: the inference paths first, they are nearly all the traffic.
    table: list[tuple[str, dict[str, Callable[[Request], object]]]] = [
        (_V2_MODEL + r"/infer$", {"POST": v2_infer}),
        (_TF_MODEL + r":predict$", {"POST": tfserving_predict}),
        (rf"^/mlflow/{_NAME}/invocations$", {"POST": mlflow_invocations}),
        (r"^/v2/?$", {"GET": v2_server_metadata}),
        (r"^/v2/health/live$", {"GET": v2_live}),
        (r"^/v2/health/ready$", {"GET": v2_ready}),
        (_V2_MODEL + r"$", {"GET": v2_model_metadata}),
        (_V2_MODEL + r"/ready$", {"GET": v2_model_ready}),
        (_TF_MODEL + r"$", {"GET": tfserving_status}),
        (_TF_MODEL + r"/metadata$", {"GET": tfserving_metadata}),
        (_TF_MODEL + r"(?P<op>:classify|:regress)$", {"POST": tfserving_unsupported}),
        (rf"^/mlflow/{_NAME}/(?:ping|health)$", {"GET": mlflow_ping}),
        (rf"^/mlflow/{_NAME}/version$", {"GET": mlflow_version}),
    ]
    return [(re.compile(pattern), methods) for pattern, methods in table]  # type: ignore[misc]


ROUTES = _routes()
