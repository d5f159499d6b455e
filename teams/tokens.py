"""The API token format: a visible prefix, a random secret, and the sha256 digest that is all we store."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

TOKEN_SCHEME = "mdk_"  # noqa: S105  (a public marker, not a secret)
PREFIX_LENGTH = len(TOKEN_SCHEME) + 8


@dataclass(frozen=True)
class TokenSecret:
    raw: str
    prefix: str
    digest: str


def token_digest(raw: str) -> str:
    # A plain sha256 is right here: the secret carries 256 random bits, so no stretching is needed, and
    # verification must stay cheap because it runs on every API and inference request.
    return hashlib.sha256(raw.encode()).hexdigest()


def token_generate() -> TokenSecret:
    """Make a new token: `mdk_` + 8 hex characters shown in lists + 43 characters of secret."""
    raw = f"{TOKEN_SCHEME}{secrets.token_hex(4)}{secrets.token_urlsafe(32)}"
    return TokenSecret(raw=raw, prefix=raw[:PREFIX_LENGTH], digest=token_digest(raw))


def token_looks_valid(raw: str) -> bool:
    return raw.startswith(TOKEN_SCHEME) and PREFIX_LENGTH < len(raw) <= 128 and raw.isascii()
