"""Bearer tokens on the data plane: verified once against the database, then remembered for a few seconds."""

from __future__ import annotations

import asyncio
import threading
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from teams.choices import Action
from teams.permissions import Actor, actor_can
from teams.services import api_token_authenticate
from teams.tokens import token_digest, token_looks_valid

# Bounded so random tokens cannot grow the cache without limit; cleared wholesale when full (cheap, rare).
MAX_ENTRIES = 10_000


class TokenCache:
    """Map a token digest to the team it belongs to (None for a bad token), each answer kept `ttl` seconds.

    One lookup per token at a time: concurrent requests with the same token share it, and while an expired answer
    is being re-checked the requests keep getting the previous one (never older than two `ttl`s).
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[int | None, float]] = {}
        self._inflight: dict[str, asyncio.Future[int | None]] = {}
        self._lock = threading.Lock()
        self.lookups = 0

    async def team_id(self, raw: str) -> int | None:
        """The team id of an active token, or None; hits the database about once per token per `ttl`."""
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
        if entry is not None and entry[1] + self.ttl > now:
            return entry[0]  # recently valid: answer now, the re-check runs in the background
        return await asyncio.shield(pending)

    async def _lookup(self, raw: str, digest: str) -> int | None:
        try:
            self.lookups += 1
            team_id = await sync_to_async(token_team_id, thread_sensitive=True)(raw)
            with self._lock:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[digest] = (team_id, time.monotonic() + self.ttl)
            return team_id
        finally:
            self._inflight.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._inflight.clear()


def token_team_id(raw: str) -> int | None:
    """The team an active token may invoke endpoints of (its user still a member there), or None."""
    # As Django does around each request: drop a connection that is broken or past CONN_MAX_AGE, before and after.
    close_old_connections()
    try:
        token = api_token_authenticate(raw=raw)
        if token is None:
            return None
        allowed = actor_can(actor=Actor(user=token.user, token=token), team=token.team, action=Action.INVOKE)
        return token.team_id if allowed else None
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
