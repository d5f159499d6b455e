"""The data plane's core: what every transport does with an inference call, knowing nothing of HTTP or gRPC.

A transport adapter (serving.views over the HTTP front doors, serving.grpc over gRPC) turns what arrived into a
`Request` (who calls, from where, which endpoint, version or label), then runs the same steps: authenticate and
resolve the endpoint (`endpoint_resolve`), pick the version (`version_resolve`), decode and validate with the
protocol's codec, run with batching, canary and shadow (`infer`), and tell monitoring what to record (`measure`,
`record`). Refusals are `ProtocolError`s whose status is the kind of refusal (400 invalid, 401 unauthenticated,
404 not found, 413 too large, 503 unavailable, ...): HTTP sends it as is, gRPC maps it to a status code.
"""

from __future__ import annotations

import importlib.metadata
import logging

import numpy as np

from monitoring.drift import drift_monitor
from monitoring.recorder import recorder
from serving.auth import bearer_token, caller_team_id, token_cache
from serving.outage import DATABASE_AWAY, DatabaseUnavailable
from serving.protocols.errors import ProtocolError
from serving.request import Request
from serving.router import Route, router_get
from serving.runtime_cache import LoadedVersion

logger = logging.getLogger(__name__)

SERVER_NAME = "modeldeck"
SERVER_VERSION = importlib.metadata.version("modeldeck")


def unexpected_error(request: Request, exc: Exception) -> ProtocolError:
    """The refusal for an error no handler expected: 503 while the database is away (the client may retry), else a
    500 that shows nothing of the server, with the details in the log."""
    if isinstance(exc, DATABASE_AWAY):
        logger.warning("the database is away on %s %s", request.method, request.path, exc_info=exc)
        return DatabaseUnavailable("cannot answer now")
    logger.error("data plane error on %s %s", request.method, request.path, exc_info=exc)
    return ProtocolError("internal error; the server log has the details", 500)


def record(request: Request, status: int, elapsed: float) -> None:
    """Count an answered inference request in monitoring (once its handler knew the version)."""
    if request.metric is not None:
        endpoint, version, role, rows = request.metric
        recorder.record(endpoint, version, role, status, elapsed, rows, protocol=request.protocol)


async def endpoint_resolve(request: Request) -> Route:
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
            if names_missing(route, request) and await router.refresh_on_miss():
                # A version or label just released (the caller may have set it a moment ago, through another
                # process): the snapshot is re-read as for an unknown name, so a change is seen at once.
                route = router.state.routes.get(name, route)
            return route
        # Answered exactly as a name that does not exist, 503 included: another team's names cannot be probed.
        if not await router.refresh_on_miss():
            raise DatabaseUnavailable(f"cannot tell whether endpoint '{name}' exists now")
        raise ProtocolError(f"endpoint '{name}' not found", 404)
    broken = state.broken.get(name)
    # Nothing loaded to serve: "not ready", and why, to its own team only, public or not; anyone else gets the answer
    # of a name that does not exist (401 without a valid token, else 404).
    if broken is not None and await caller_is_team(request, broken.team_id):
        raise ProtocolError(f"endpoint '{name}' is not ready: {broken.reason}", 503)
    await caller_team_id(request.headers.get("authorization"), request)
    if not settled:
        raise DatabaseUnavailable(f"cannot tell whether endpoint '{name}' exists now")
    raise ProtocolError(f"endpoint '{name}' not found", 404)


def names_missing(route: Route, request: Request) -> bool:
    """Whether the request names a version number or label that the route's snapshot does not hold."""
    number = request.params.get("version")
    if number is not None:
        return number.isascii() and number.isdigit() and route.version(int(number)) is None
    label = request.params.get("label")
    return label is not None and route.label(label) is None


async def caller_is_team(request: Request, team_id: int) -> bool:
    """Whether the request carries a valid token of this team (no token, or another team's, is simply False)."""
    token = bearer_token(request.headers.get("authorization"))
    return token is not None and await token_cache().team_id(token) == team_id


def version_resolve(route: Route, request: Request) -> tuple[LoadedVersion, bool]:
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


def version_described(route: Route, request: Request) -> LoadedVersion:
    """The version a metadata or status call describes: the one it names (number or label), else the primary."""
    if "version" in request.params or "label" in request.params:
        return version_resolve(route, request)[0]
    return route.primary


async def infer(
    route: Route, version: LoadedVersion, picked: bool, inputs: dict[str, np.ndarray], protocol: str = "http"
) -> dict[str, np.ndarray]:
    """Run the inputs on `version`; a copy of what the release picked for the primary goes to the shadow, recorded
    under the caller's `protocol` as the primary's request is."""
    router = router_get()
    try:
        outputs = await router.infer(route, version, inputs)
    except Exception as exc:
        raise runtime_error(exc, version) from exc
    if picked and version is route.primary:
        router.shadow_copy(route, inputs, outputs, protocol)
    drift_monitor.observe(route.endpoint, version.key.number, version.drift, inputs)
    return outputs


def runtime_error(exc: Exception, version: LoadedVersion) -> ProtocolError:
    # onnxruntime reports bad values (an index out of range, ...) as InvalidArgument: the caller's fault.
    if type(exc).__name__ in {"InvalidArgument", "InvalidGraph"} or isinstance(exc, ValueError):
        return ProtocolError(f"v{version.key.number} refused the input: {exc}", 400)
    return ProtocolError(f"v{version.key.number} failed to run: {type(exc).__name__}: {exc}", 500)


def version_role(route: Route, version: LoadedVersion) -> str:
    if version is route.primary:
        return "primary"
    return "canary" if version is route.canary else "shadow"


def measure(request: Request, route: Route, version: LoadedVersion, inputs: dict[str, np.ndarray] | None) -> None:
    """Tell the front door what to record for this request (it knows the status and the time)."""
    rows = int(next(iter(inputs.values())).shape[0]) if inputs and next(iter(inputs.values())).ndim else 0
    request.metric = (route.endpoint, version.key.number, version_role(route, version), rows)


def live_versions(route: Route) -> list[str]:
    return sorted({str(v.key.number) for v in route.live()}, key=int)
