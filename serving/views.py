"""The inference APIs: Open Inference Protocol (KServe V2 / Triton), TF Serving REST, and MLflow scoring.

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

import numpy as np

from monitoring.drift import drift_monitor
from serving.asgi import Handler, Request, Response
from serving.auth import bearer_token, caller_team_id, token_cache
from serving.decoding import body_decode
from serving.outage import DatabaseUnavailable
from serving.protocols import mlflow, tfserving, v2
from serving.protocols.errors import ProtocolError
from serving.router import Route, router_get
from serving.runtime_cache import LoadedVersion

SERVER_NAME = "modeldeck"
SERVER_VERSION = "0.1.0"
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


# --- resolving endpoint and version ---------------------------------------------------------------------------


async def _route(request: Request) -> Route:
    """The endpoint's live route, once the caller may use it.

    Authentication comes first: a name that is not a public endpoint needs a valid token whether it exists or not (the
    same 401 for every name), and a valid token gets the same 404 for another team's endpoint, broken or not, as for a
    name that does not exist. So names cannot be probed, and a wrong token is never told "not found". While the
    database is away, a name the snapshot cannot settle gets 503, after the same authentication.
    """
    name = request.params["name"]
    router = router_get()
    state = router.state
    route = state.routes.get(name)
    settled = True
    if route is None:
        settled = await router.refresh_on_miss()
        state = router.state
        route = state.routes.get(name)
    if route is not None:
        if route.public or await caller_team_id(request.headers.get("authorization"), request) == route.team_id:
            return route
        # Answered exactly as a name that does not exist, 503 included: another team's names cannot be probed.
        if not await router.refresh_on_miss():
            raise DatabaseUnavailable(f"cannot tell whether endpoint '{name}' exists now")
        raise ProtocolError(f"endpoint '{name}' not found", 404)
    broken = state.broken.get(name)
    # Nothing loaded to serve: "not ready", and why, to its own team only, public or not; anyone else gets the answer
    # of a name that does not exist (401 without a valid token, else 404).
    if broken is not None and await _is_team(request, broken.team_id):
        raise ProtocolError(f"endpoint '{name}' is not ready: {broken.reason}", 503)
    await caller_team_id(request.headers.get("authorization"), request)
    if not settled:
        raise DatabaseUnavailable(f"cannot tell whether endpoint '{name}' exists now")
    raise ProtocolError(f"endpoint '{name}' not found", 404)


async def _is_team(request: Request, team_id: int) -> bool:
    """Whether the request carries a valid token of this team (no token, or another team's, is simply False)."""
    token = bearer_token(request.headers.get("authorization"))
    return token is not None and await token_cache().team_id(token) == team_id


def _version(route: Route, request: Request) -> tuple[LoadedVersion, bool]:
    """The version a request names (or the release's pick), and whether it was picked by the traffic split."""
    number = request.params.get("version")
    label = request.params.get("label")
    if number is not None:
        found = route.version(int(number)) if number.isascii() and number.isdigit() else None
        if found is None:
            live = ", ".join(str(v.key.number) for v in route.live())
            raise ProtocolError(f"version '{number}' of '{route.endpoint}' is not deployed (live: {live})", 404)
        return found, False
    if label is not None:
        found = route.label(label)
        if found is None:
            known = "'stable'" + (", 'canary'" if route.canary is not None else "")
            raise ProtocolError(f"label '{label}' of '{route.endpoint}' is not assigned (labels: {known})", 404)
        return found, False
    return route.pick(), True


async def _run(
    route: Route, version: LoadedVersion, picked: bool, inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    router = router_get()
    try:
        outputs = await router.infer(route, version, inputs)
    except Exception as exc:
        raise _runtime_error(exc, version) from exc
    if picked and version is route.primary:
        router.shadow_copy(route, inputs, outputs)
    drift_monitor.observe(route.endpoint, version.key.number, version.drift, inputs)
    return outputs


def _runtime_error(exc: Exception, version: LoadedVersion) -> ProtocolError:
    # onnxruntime reports bad values (an index out of range, ...) as InvalidArgument: the caller's fault.
    if type(exc).__name__ in {"InvalidArgument", "InvalidGraph"} or isinstance(exc, ValueError):
        return ProtocolError(f"v{version.key.number} refused the input: {exc}", 400)
    return ProtocolError(f"v{version.key.number} failed to run: {type(exc).__name__}: {exc}", 500)


def _role(route: Route, version: LoadedVersion) -> str:
    if version is route.primary:
        return "primary"
    return "canary" if version is route.canary else "shadow"


def _measure(request: Request, route: Route, version: LoadedVersion, inputs: dict[str, np.ndarray] | None) -> None:
    """Tell the front door what to record for this request (it knows the status and the time)."""
    rows = int(next(iter(inputs.values())).shape[0]) if inputs and next(iter(inputs.values())).ndim else 0
    request.metric = (route.endpoint, version.key.number, _role(route, version), rows)


def _versions(route: Route) -> list[str]:
    return sorted({str(v.key.number) for v in route.live()}, key=int)


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
    route = await _route(request)
    version, _ = _version(route, request) if "version" in request.params else (route.primary, False)
    body = v2.v2_model_metadata(
        name=route.endpoint,
        versions=_versions(route),
        platform=v2.PLATFORMS.get(version.key.format, version.key.format),
        signature=version.key.signature,
    )
    return _json(200, body)


@_protocol_errors
async def v2_model_ready(request: Request) -> Response:
    route = await _route(request)
    if "version" in request.params:
        _version(route, request)
    else:
        # An earlier release still serves, but the live one could not be loaded: its team is told, nobody else.
        broken = router_get().state.broken.get(route.endpoint)
        if broken is not None and await _is_team(request, broken.team_id):
            raise ProtocolError(f"endpoint '{route.endpoint}' is not ready: {broken.reason}", 503)
    return _json(200, {"name": route.endpoint, "ready": True})


@_protocol_errors
async def v2_infer(request: Request) -> Response:
    route = await _route(request)
    version, picked = _version(route, request)
    _measure(request, route, version, None)
    header_length = request.headers.get("inference-header-content-length")
    if header_length is not None and not (header_length.isascii() and header_length.isdigit()):
        raise ProtocolError("Inference-Header-Content-Length must be a number of bytes")
    json_length = int(header_length) if header_length is not None else None
    body = await request.read()
    json_size = len(body) if json_length is None else min(json_length, len(body))
    parsed = await body_decode(json_size, v2.v2_request_parse, body, version.key.signature, json_length)
    _measure(request, route, version, parsed.inputs)
    outputs = await _run(route, version, picked, parsed.inputs)
    body, headers = v2.v2_response_encode(
        model_name=route.endpoint, model_version=str(version.key.number), request=parsed, outputs=outputs
    )
    headers["x-modeldeck-version"] = str(version.key.number)
    return Response(200, body, headers)


# --- TF Serving REST --------------------------------------------------------------------------------------------


@_protocol_errors
async def tfserving_status(request: Request) -> Response:
    route = await _route(request)
    if "version" in request.params or "label" in request.params:
        version, _ = _version(route, request)
        return _json(200, tfserving.tfserving_status([str(version.key.number)]))
    return _json(200, tfserving.tfserving_status(_versions(route)))


@_protocol_errors
async def tfserving_metadata(request: Request) -> Response:
    route = await _route(request)
    version = _version(route, request)[0] if request.params.keys() & {"version", "label"} else route.primary
    return _json(
        200,
        tfserving.tfserving_metadata(
            name=route.endpoint, version=str(version.key.number), signature=version.key.signature
        ),
        version,
    )


@_protocol_errors
async def tfserving_predict(request: Request) -> Response:
    route = await _route(request)
    version, picked = _version(route, request)
    _measure(request, route, version, None)
    body = await request.read()
    inputs, style = await body_decode(len(body), tfserving.tfserving_request_parse, body, version.key.signature)
    _measure(request, route, version, inputs)
    outputs = await _run(route, version, picked, inputs)
    headers = {**JSON, "x-modeldeck-version": str(version.key.number)}
    return Response(200, tfserving.tfserving_response_encode(outputs, style), headers)


@_protocol_errors
async def tfserving_unsupported(request: Request) -> Response:
    await _route(request)
    verb = request.params.get("op", "").lstrip(":")
    raise ProtocolError(f"'{verb}' needs a tf.Example classification/regression signature; use ':predict'", 400)


# --- MLflow scoring ---------------------------------------------------------------------------------------------


@_protocol_errors
async def mlflow_ping(request: Request) -> Response:
    await _route(request)
    return Response(200, b"\n", {"content-type": "application/json"})


@_protocol_errors
async def mlflow_version(request: Request) -> Response:
    await _route(request)
    return Response(200, SERVER_VERSION.encode(), {"content-type": "text/plain"})


@_protocol_errors
async def mlflow_invocations(request: Request) -> Response:
    route = await _route(request)
    version, picked = route.pick(), True
    _measure(request, route, version, None)
    content_type = request.headers.get("content-type")
    mlflow.mlflow_content_kind(content_type)  # 415 before the body is read
    body = await request.read()
    inputs = await body_decode(len(body), mlflow.mlflow_request_parse, body, content_type, version.key.signature)
    _measure(request, route, version, inputs)
    outputs = await _run(route, version, picked, inputs)
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
