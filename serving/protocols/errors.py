"""The one error every protocol decoder raises for a request it refuses."""

from __future__ import annotations


class ProtocolError(Exception):
    """A request the protocol refuses: `status` (400, 404, 415, ...), a message that says exactly what is wrong, and
    any headers the answer must carry (a 401's `www-authenticate` challenge)."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers

    def __reduce__(self) -> tuple[type[ProtocolError], tuple[str, int, dict[str, str] | None]]:
        # Raised in a decoding process too (serving.decoding): it must cross back with its status and headers.
        return (ProtocolError, (self.message, self.status, self.headers))
