"""The data plane while the database cannot be reached: which errors say so, and the 503 they are answered with."""

from __future__ import annotations

from django.db import InterfaceError, OperationalError

from serving.protocols.errors import ProtocolError

# The database is away (refused, dropped, shutting down, a closed connection), not wrong: a ProgrammingError or an
# IntegrityError is a bug, and stays a 500.
DATABASE_AWAY = (OperationalError, InterfaceError)
# How long a client is asked to wait before retrying: an outage's length is unknown, and recovery is automatic.
RETRY_AFTER_SECONDS = 5


class DatabaseUnavailable(ProtocolError):
    """An answer that needs the database while it cannot be reached: 503 with Retry-After, never a verdict."""

    def __init__(self, message: str) -> None:
        super().__init__(
            f"{message}: the serving database cannot be reached; retry later",
            503,
            {"retry-after": str(RETRY_AFTER_SECONDS)},
        )
