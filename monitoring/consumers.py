"""Websocket consumers; they authenticate, join a group and relay, nothing more.

Authentication is not a one-off: an open socket re-checks its session and its team access on a timer
(MODELDECK_WS_RECHECK_SECONDS) and at once when its user's membership changes, and closes when either is gone.
"""

from __future__ import annotations

import asyncio
import logging
import random
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model

from common.channel_groups import endpoint_group, team_group, user_group
from common.errors import NotFoundError
from deployments.selectors import endpoint_get
from teams.choices import Action
from teams.models import Team
from teams.permissions import Actor, actor_can

logger = logging.getLogger(__name__)

# Close codes in the 4000-4999 range are the application's; these mirror HTTP.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class TeamStreamConsumer(AsyncJsonWebsocketConsumer):
    """A stream of one team's data, open to its members for as long as they stay members and logged in."""

    joined: tuple[str, ...] = ()
    rechecks: asyncio.Task[None] | None = None
    # What the session said at connect: its user key, the user's id and the hash of their password then.
    login: tuple[Any, int, str] = (None, 0, "")

    def stream_group(self) -> str:
        raise NotImplementedError

    def may_stream(self, user: Any) -> bool:
        """Whether the user may read this stream (runs in a database thread)."""
        raise NotImplementedError

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        # An outsider is refused exactly like a stream that does not exist.
        if not await database_sync_to_async(self.may_stream)(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.login = (self.scope["session"].get(SESSION_KEY), user.pk, user.get_session_auth_hash())
        # The user's own group is where membership changes are announced (common.events).
        self.joined = (self.stream_group(), user_group(user.pk))
        await self._join()
        await self.accept()
        self.rechecks = asyncio.create_task(self._recheck_on_timer())

    async def disconnect(self, code: int) -> None:
        if self.rechecks is not None:
            self.rechecks.cancel()
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def access_changed(self, message: dict[str, Any]) -> None:
        await self._recheck()

    async def _join(self) -> None:
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)

    @database_sync_to_async
    def _close_code(self) -> int | None:
        """The code to close with now, or None while the socket may stay open."""
        session_user, user_id, auth_hash = self.login
        # Read only: django.contrib.auth.get_user() would flush or re-key the session the browser still holds.
        session = import_module(settings.SESSION_ENGINE).SessionStore(self.scope["session"].session_key)
        user = get_user_model()._default_manager.filter(pk=user_id, is_active=True).first()
        if session.get(SESSION_KEY) != session_user or user is None or user.get_session_auth_hash() != auth_hash:
            return CLOSE_UNAUTHENTICATED  # logged out, deactivated, or the password changed
        return None if self.may_stream(user) else CLOSE_FORBIDDEN

    async def _recheck(self) -> bool:
        """Close the socket if its access is gone; return whether it stays open."""
        try:
            code = await self._close_code()
            if code is None:
                # Joining again renews the groups: they expire, and a Redis that restarted empty forgot them.
                await self._join()
                return True
        except Exception:  # the database or Redis is away: keep the socket, the next check tries again
            logger.warning("websocket access re-check failed; the socket stays open", exc_info=True)
            return True
        await self.close(code=code)
        return False

    async def _recheck_on_timer(self) -> None:
        interval = settings.MODELDECK_WS_RECHECK_SECONDS
        # Up to 10 % jitter, so sockets opened together (every browser after a restart) spread their checks out.
        while True:
            await asyncio.sleep(interval * random.uniform(0.9, 1.0))  # noqa: S311
            if not await self._recheck():
                return


class TeamEventsConsumer(TeamStreamConsumer):
    """Stream a team's events (releases, job progress, alerts) to its members' browsers."""

    def stream_group(self) -> str:
        return team_group(self.scope["url_route"]["kwargs"]["team"])

    def may_stream(self, user: Any) -> bool:
        team = Team.objects.filter(slug=self.scope["url_route"]["kwargs"]["team"]).first()
        return team is not None and actor_can(actor=Actor(user=user), team=team, action=Action.VIEW)

    async def team_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])


class EndpointMetricsConsumer(TeamStreamConsumer):
    """Stream an endpoint's per-second, per-version metrics, merged across web processes, to its team's browsers."""

    def stream_group(self) -> str:
        return endpoint_group(self.scope["url_route"]["kwargs"]["name"])

    def may_stream(self, user: Any) -> bool:
        try:
            endpoint_get(actor=Actor(user=user), name=self.scope["url_route"]["kwargs"]["name"])
        except NotFoundError:
            return False
        return True

    async def endpoint_metrics(self, message: dict[str, Any]) -> None:
        await self.send_json(message["metrics"])
