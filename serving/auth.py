"""Bearer tokens on the data plane: verified once against the database, then remembered for a few seconds (and, while
the database cannot be reached, for a bounded grace)."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import threading
import time
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from serving.outage import DATABASE_AWAY, DatabaseUnavailable
from serving.protocols.errors import ProtocolError
from teams.auth_throttle import address_normalize, retry_after_text, token_failure_record
from teams.choices import Action
from teams.permissions import Actor, actor_can
from teams.services import api_token_authenticate
from teams.tokens import token_digest, token_looks_valid

if TYPE_CHECKING:
    from serving.request import Request

# Bounded so random tokens cannot grow the cache without limit; cleared wholesale when full (cheap, rare).
MAX_ENTRIES = 10_000


class TokenCache:
    """Map a token digest to the team it belongs to (None for a bad token), each answer kept `ttl` seconds.

    One lookup per token at a time: concurrent requests with the same token share it, and while an expired answer
    is being re-checked the requests keep getting the previous one (never older than two `ttl`s). A token's own
    expiry is exact: a valid answer is never given past the token's `expires_at`.

    While the database cannot be reached, an answer verified within `grace` seconds is kept as it was (a token seen
    revoked stays refused) and re-checked about once per `ttl`; a token with no such answer gets 503.
    """

    def __init__(self, ttl: float, grace: float) -> None:
        self.ttl = ttl
        self.grace = grace
        # digest -> (team id or None, fresh until, usable until while a re-check runs, usable until while the
        # database is away), on the monotonic clock.
        self._entries: dict[str, tuple[int | None, float, float, float]] = {}
        self._inflight: dict[str, asyncio.Future[int | None]] = {}
        self._lock = threading.Lock()
        self.lookups = 0

    async def team_id(self, raw: str) -> int | None:
        """The team id of an active token, or None for a bad one; hits the database about once per token per `ttl`.

        A database error says nothing about the token, so it must not read as a bad one (401): without an answer
        verified within the grace it raises DatabaseUnavailable (503).
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
            # A re-check nobody waits for may fail (the database away, the grace over): not an unretrieved error.
            pending.add_done_callback(_retrieve)
        if entry is not None and entry[2] > now:
            return entry[0]  # recently valid: answer now, the re-check runs in the background
        return await asyncio.shield(pending)

    async def _lookup(self, raw: str, digest: str) -> int | None:
        try:
            self.lookups += 1
            try:
                team_id, valid_for = await sync_to_async(token_check, thread_sensitive=True)(raw)
            except DATABASE_AWAY:
                return self._last_verified(digest)
            now = time.monotonic()
            fresh = now + min(self.ttl, valid_for)
            usable = min(fresh + self.ttl, now + valid_for)
            with self._lock:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[digest] = (team_id, fresh, usable, now + min(self.grace, valid_for))
            return team_id
        finally:
            self._inflight.pop(digest, None)

    def _last_verified(self, digest: str) -> int | None:
        """The answer verified within the grace, while the database is away; DatabaseUnavailable without one."""
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is None or entry[3] <= now:
            raise DatabaseUnavailable("cannot verify the token now")
        # Meanwhile the answer stands without waiting: the database is tried again about once a ttl, not per request.
        again = min(now + self.ttl, entry[3])
        with self._lock:
            self._entries[digest] = (entry[0], again, entry[3], entry[3])
        return entry[0]

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
        _tokens = TokenCache(
            ttl=settings.MODELDECK_SERVING_TOKEN_TTL_SECONDS, grace=settings.MODELDECK_SERVING_TOKEN_GRACE_SECONDS
        )
    return _tokens


def _retrieve(done: asyncio.Future[int | None]) -> None:
    if not done.cancelled():
        done.exception()


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


async def caller_team_id(authorization: str | None, request: Request | None = None) -> int:
    """The team of the request's bearer token; raise the same 401 for any endpoint name when there is no valid one.

    Given the request, a bad or malformed token counts against its client address, and past the limit the answer is
    429 with Retry-After (teams.auth_throttle). Only failures pay for that: a valid token costs what it did.
    """
    token = bearer_token(authorization)
    if token is None:
        if not authorization:
            raise ProtocolError(MISSING_CREDENTIALS, 401, CHALLENGE)
        raise await _token_failure(request, ProtocolError(MALFORMED_CREDENTIALS, 401, CHALLENGE))
    team_id = await token_cache().team_id(token)
    if team_id is None:
        raise await _token_failure(request, ProtocolError(INVALID_CREDENTIALS, 401, INVALID_TOKEN_CHALLENGE))
    return team_id


# Client address -> when its lock ends (monotonic), as this process learned it: while it lasts, a bad token from there
# is refused here, without the cache, the thread hop or the database (the refusal was audited when it was learned).
_locked: dict[str, float] = {}


async def _token_failure(request: Request | None, refusal: ProtocolError) -> ProtocolError:
    if request is None:
        return refusal
    address = address_normalize(client_address(request.client, request.headers.get("x-forwarded-for")))
    now = time.monotonic()
    until = _locked.get(address)
    if until is not None and until > now:
        retry_after: int | None = math.ceil(until - now)
    else:
        retry_after = await sync_to_async(token_failure_count, thread_sensitive=True)(address)
        if retry_after is not None:
            if len(_locked) >= MAX_ENTRIES:
                _locked.clear()
            _locked[address] = now + retry_after
    if retry_after is None:
        return refusal
    message = f"too many invalid tokens from this address; try again in {retry_after_text(retry_after)}"
    return ProtocolError(message, 429, {"retry-after": str(retry_after)})


def token_failure_count(address: str) -> int | None:
    """Count a failed token from the address; the seconds it must wait if it is locked (None: answer 401)."""
    close_old_connections()  # the audit row of a lockout is a write: as Django does around each request
    try:
        lockout = token_failure_record(address=address)
        return lockout.retry_after if lockout is not None else None
    finally:
        close_old_connections()


def client_address(peer: str, forwarded_for: str | None) -> str:
    """The client's address: the peer's, or, when the peer is a proxy FORWARDED_ALLOW_IPS trusts, the nearest address
    in X-Forwarded-For that is not such a proxy (as uvicorn's ProxyHeadersMiddleware decides for the other paths)."""
    if not forwarded_for or not _trusted_proxy(peer):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted_proxy(hop):
            return hop
    return hops[0] if hops else peer


def _trusted_proxy(host: str) -> bool:
    trusted: list[str] = settings.FORWARDED_ALLOW_IPS
    if "*" in trusted or host in trusted:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for entry in trusted:
        try:
            if "/" in entry and address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False
