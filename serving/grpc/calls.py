"""What every gRPC method shares: the core's `Request` built from the call, refusals as gRPC status codes, and the
request counted in monitoring with the `grpc` protocol label."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from serving import core
from serving.core import Request
from serving.protocols.errors import ProtocolError

T = TypeVar("T")

# The core's refusals are kinds named by their HTTP status; gRPC says each with its own code.
STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}


def status_code(status: int) -> grpc.StatusCode:
    """The gRPC code of a refusal's status (an unlisted 4xx is the caller's fault, anything else the server's)."""
    found = STATUS_CODES.get(status)
    if found is not None:
        return found
    return grpc.StatusCode.INVALID_ARGUMENT if 400 <= status < 500 else grpc.StatusCode.INTERNAL


def _peer_address(peer: str) -> str:
    # "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555", "unix:/path": the host part, as the HTTP side's scope["client"].
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return rest


def grpc_request(context: grpc.aio.ServicerContext, method: str, params: dict[str, str]) -> Request:
    """The core's view of a gRPC call: its metadata as headers (the `authorization` entry is the token), its peer."""
    headers: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):  # binary ("-bin") entries carry nothing the data plane reads
            headers[key.lower()] = value
    return Request("POST", method, headers, params=params, client=_peer_address(context.peer()), protocol="grpc")


async def grpc_answer(
    context: grpc.aio.ServicerContext, request: Request, answer: Callable[[Request], Awaitable[T]]
) -> T:
    """Run one call through the core: a refusal aborts with its code and the same message HTTP would give, a bug
    aborts INTERNAL with nothing of the server in it, and an inference call is recorded with its outcome."""
    started = time.perf_counter()
    status = 200
    try:
        return await answer(request)
    except ProtocolError as exc:
        status = exc.status
        refusal = exc
    except Exception as exc:  # noqa: BLE001 -- any bug still gets an answer with a status code
        refusal = core.unexpected_error(request, exc)
        status = refusal.status
    finally:
        core.record(request, status, time.perf_counter() - started)
    if refusal.headers and "retry-after" in refusal.headers:
        context.set_trailing_metadata((("retry-after", refusal.headers["retry-after"]),))
    await context.abort(status_code(refusal.status), refusal.message)
    raise AssertionError("abort raises")  # pragma: no cover
