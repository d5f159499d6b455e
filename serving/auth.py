"""Bearer tokens on the data plane: verified once against the database, then remembered for a few seconds."""

from __future__ import annotations

import asyncio
import math
import threading
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from serving.protocols.errors import ProtocolError
from teams.choices import Action
from teams.permissions import Actor, actor_can
from teams.services import api_token_authenticate
from teams.tokens import token_digest, token_looks_valid

# Bounded so random tokens cannot grow the cache without limit; cleared wholesale when full (cheap, rare).
MAX_ENTRIES = 10_000


class TokenCache:
    """Map a token digest to the team it belongs to (None for a bad token), each answer kept `ttl` seconds.

    One lookup per token at a time: concurrent requests with the same token share it, and while an expired answer
    is being re-checked the requests keep getting the previous one (never older than two `ttl`s). A token's own
    expiry is exact: a valid answer is never given past the token's `expires_at`.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        # digest -> (team id or None, fresh until, usable until while a re-check runs), on the monotonic clock.
        self._entries: dict[str, tuple[int | None, float, float]] = {}
        self._inflight: dict[str, asyncio.Future[int | None]] = {}
        self._lock = threading.Lock()
        self.lookups = 0

    async def team_id(self, raw: str) -> int | None:
        """The team id of an active token, or None for a bad one; hits the database about once per token per `ttl`.

        A database error propagates: it says nothing about the token, so it must not read as a bad one (401).
        """
        if not token_looks_valid(raw):
            return None
        digest = token_digest(raw)
        entry = self._entries.get(digest)
        now = time.monotonic()
        if entry is not None and entry[1] > now:
            return entry[0]
        pending = self._inflight.get(digest)
        if pending is None:
            pending = self._inflight[digest] = asyncio.ensure_future(self._lookup(raw, digest))
        if entry is not None and entry[2] > now:
            return entry[0]  # recently valid: answer now, the re-check runs in the background
        return await asyncio.shield(pending)

    async def _lookup(self, raw: str, digest: str) -> int | None:
        try:
            self.lookups += 1
            team_id, valid_for = await sync_to_async(token_check, thread_sensitive=True)(raw)
            now = time.monotonic()
            fresh = now + min(self.ttl, valid_for)
            usable = min(fresh + self.ttl, now + valid_for)
            with self._lock:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[digest] = (team_id, fresh, usable)
            return team_id
        finally:
            self._inflight.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._inflight.clear()


def token_check(raw: str) -> tuple[int | None, float]:
    """The team an active token may invoke endpoints of (its user still a member there), or None; and for how many
    seconds that answer holds at most (until the token expires; infinite for a token without expiry or a bad one)."""
    # As Django does around each request: drop a connection that is broken or past CONN_MAX_AGE, before and after.
    close_old_connections()
    try:
        token = api_token_authenticate(raw=raw)
        if token is None:
            return None, math.inf
        if not actor_can(actor=Actor(user=token.user, token=token), team=token.team, action=Action.INVOKE):
            return None, math.inf
        if token.expires_at is None:
            return token.team_id, math.inf
        return token.team_id, (token.expires_at - timezone.now()).total_seconds()
    finally:
        close_old_connections()


_tokens: TokenCache | None = None


def token_cache() -> TokenCache:
    global _tokens
    if _tokens is None:
        _tokens = TokenCache(ttl=settings.MODELDECK_SERVING_TOKEN_TTL_SECONDS)
    return _tokens


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if there is one."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


# RFC 6750: a request without a bearer token gets the bare challenge; one with a bad token is told `invalid_token`.
CHALLENGE = {"www-authenticate": 'Bearer realm="modeldeck"'}
INVALID_TOKEN_CHALLENGE = {"www-authenticate": 'Bearer realm="modeldeck", error="invalid_token"'}
# No message names the endpoint: a 401 must not say whether the name exists.
MISSING_CREDENTIALS = "missing token: send 'Authorization: Bearer <token>' with a token of the endpoint's team"
MALFORMED_CREDENTIALS = "malformed Authorization header: send 'Authorization: Bearer <token>'"
INVALID_CREDENTIALS = "invalid token: it is unknown, expired or revoked, or its user is no longer a member of its team"


async def caller_team_id(authorization: str | None) -> int:
    """The team of the request's bearer token; raise the same 401 for any endpoint name when there is no valid one."""
    token = bearer_token(authorization)
    if token is None:
        message = MALFORMED_CREDENTIALS if authorization else MISSING_CREDENTIALS
        raise ProtocolError(message, 401, CHALLENGE)
    team_id = await token_cache().team_id(token)
    if team_id is None:
        raise ProtocolError(INVALID_CREDENTIALS, 401, INVALID_TOKEN_CHALLENGE)
    return team_id
