"""ModelDeck's Python SDK and `modeldeck` CLI: a client of the REST API (it never imports Django)."""

from __future__ import annotations

import importlib.metadata

# pyproject.toml's `version` is the one written value; everything else reads it from the installed metadata. Set
# before the imports below: the client sends it in its User-Agent.
__version__ = importlib.metadata.version("modeldeck")

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
