"""What every gRPC method shares: the core's `Request` built from the call, refusals as gRPC status codes, the
request counted in monitoring with the `grpc` protocol label, and tensors decoded under the process's in-flight
byte budget (large ones off the event loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import grpc
from django.conf import settings

from serving import core
from serving.protocols.errors import ProtocolError
from serving.request import BodyBudget, Request

T = TypeVar("T")

# The request bytes this process holds for calls not yet answered (MODELDECK_MAX_INFLIGHT_BODY_BYTES, read again
# by serving.grpc.server when it builds a server): gRPC has read a message whole before a method runs, so its size
# is reserved there, and a call past the limit is refused UNAVAILABLE with retry-after, as HTTP's 503.
budget = BodyBudget(settings.MODELDECK_MAX_INFLIGHT_BODY_BYTES)
# MODELDECK_OFFLOOP_DECODE_BYTES, read once (a read through Django's lazy settings costs a microsecond a call).
offloop_bytes: int = settings.MODELDECK_OFFLOOP_DECODE_BYTES


def limits_read() -> None:
    """Take the byte limits from the settings as they are now (serving.grpc.server, when it builds a server)."""
    global offloop_bytes
    budget.limit = settings.MODELDECK_MAX_INFLIGHT_BODY_BYTES
    offloop_bytes = settings.MODELDECK_OFFLOOP_DECODE_BYTES


class Received(NamedTuple):
    """An inference message as its method gets it: parsed, with the size it had on the wire."""

    message: Any
    size: int


def sized(parse: Callable[[bytes], Any]) -> Callable[[bytes], Received]:
    """A request deserializer that keeps the message's size (the budget and the off-loop decision need it)."""

    def deserialize(data: bytes) -> Received:
        return Received(parse(data), len(data))

    return deserialize


def unary(
    behaviour: Callable[..., Any], request_type: Any, response_type: Any, keep_size: bool = False
) -> grpc.RpcMethodHandler:
    """A unary method's handler; with `keep_size`, its behaviour gets a `Received` (inference calls)."""
    parse = sized(request_type.FromString) if keep_size else request_type.FromString
    return grpc.unary_unary_rpc_method_handler(
        behaviour, request_deserializer=parse, response_serializer=response_type.SerializeToString
    )


async def tensors_decode(request: Request, size: int, decode: Callable[..., T], *args: Any) -> T:
    """`decode(*args)`, with the message's `size` reserved against the budget until the call is answered (released by
    `grpc_answer`). A message over MODELDECK_OFFLOOP_DECODE_BYTES is decoded on a thread: its fields are parsed
    already (protobuf's C code), and turning typed contents into arrays would otherwise hold up every other call on
    the loop; numpy holds the GIL for stretches, so the loop still slows, but it is not stopped for the whole body."""
    budget.reserve(request, size)
    if size > offloop_bytes:
        return await asyncio.to_thread(decode, *args)
    return decode(*args)


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
        budget.release(request)
        core.record(request, status, time.perf_counter() - started)
    if refusal.headers and "retry-after" in refusal.headers:
        context.set_trailing_metadata((("retry-after", refusal.headers["retry-after"]),))
    await context.abort(status_code(refusal.status), refusal.message)
    raise AssertionError("abort raises")  # pragma: no cover
