"""ModelDeck's Python SDK and `modeldeck` CLI: a client of the REST API (it never imports Django)."""

from __future__ import annotations

__version__ = "0.1.0"

from modeldeck.client import Client, model_reference_split
from modeldeck.errors import (
    ConnectionFailed,
    Invalid,
    JobFailed,
    ModelDeckError,
    NotAuthenticated,
    NotFound,
    ParityFailed,
    PermissionDenied,
    WaitTimeout,
)

__all__ = [
    "Client",
    "ConnectionFailed",
    "Invalid",
    "JobFailed",
    "ModelDeckError",
    "NotAuthenticated",
    "NotFound",
    "ParityFailed",
    "PermissionDenied",
    "WaitTimeout",
    "__version__",
    "model_reference_split",
]
