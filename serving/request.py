"""The inference call as every transport hands it to the data plane (`Request`), its answer (`Response`), and the
process's budget of request bytes held for calls not yet answered (`BodyBudget`).

Below `serving.core` and `serving.auth`, which both take a `Request`: nothing here knows how a call is answered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from serving.protocols.errors import ProtocolError


@dataclass
class Request:
    """One inference call, whatever carried it. Its body is not read until the handler has passed the header phase
    (the caller is authenticated, the endpoint resolved, the content type and declared length checked) and calls
    `read()`."""

    method: str
    path: str  # the HTTP path, or the gRPC method ("/inference.GRPCInferenceService/ModelInfer")
    headers: dict[str, str]  # HTTP headers, or gRPC metadata: lower-case names either way
    body: bytes = b""
    # The endpoint `name`, and the `version` number or `label` asked for, when the call names them.
    params: dict[str, str] = field(default_factory=dict)
    # Set once the version is known: (endpoint, version number, role, rows) to record.
    metric: tuple[str, int, str, int] | None = None
    # How the transport reads the body (None: read already, or there is none).
    reader: Callable[[Request], Awaitable[bytes]] | None = None
    # Bytes of the process's in-flight body budget this request holds until it is answered.
    reserved: int = 0
    # The peer's address (a proxy's, behind one: serving.auth.client_address reads X-Forwarded-For when it must).
    client: str = ""
    # The transport, a label on the monitoring series: "http" or "grpc".
    protocol: str = "http"

    async def read(self) -> bytes:
        """The whole body; raises ProtocolError 408 (too slow), 413 (too large) or 503 (the server is full)."""
        reader = self.reader
        if reader is not None:
            self.reader = None
            self.body = await reader(self)
        return self.body


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


Handler = Callable[[Request], Awaitable[Response]]

RETRY_AFTER_SECONDS = "1"


class BodyBudget:
    """The request bytes a process may hold at once for calls not yet answered (MODELDECK_MAX_INFLIGHT_BODY_BYTES):
    each transport reserves a call's bytes as it takes them and releases them once it answered; past the limit a
    call is refused 503 (UNAVAILABLE over gRPC) with Retry-After instead of taking the process's memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0

    def reserve(self, request: Request, size: int) -> None:
        if self.inflight + size > self.limit:
            message = "the server is receiving too many request bodies at once; retry shortly"
            raise ProtocolError(message, 503, {"retry-after": RETRY_AFTER_SECONDS, "connection": "close"})
        self.inflight += size
        request.reserved += size

    def release(self, request: Request) -> None:
        self.inflight -= request.reserved
        request.reserved = 0
