"""Websocket consumers; they authenticate, join a group and relay, nothing more."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from common.errors import NotFoundError
from deployments.selectors import endpoint_get
from monitoring.groups import endpoint_group, team_group
from teams.choices import Action
from teams.models import Team
from teams.permissions import Actor, actor_can

# Close codes in the 4000-4999 range are the application's; these mirror HTTP.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


@database_sync_to_async
def _may_view(user: Any, slug: str) -> bool:
    team = Team.objects.filter(slug=slug).first()
    return team is not None and actor_can(actor=Actor(user=user), team=team, action=Action.VIEW)


@database_sync_to_async
def _may_view_endpoint(user: Any, name: str) -> bool:
    try:
        endpoint_get(actor=Actor(user=user), name=name)
    except NotFoundError:
        return False
    return True


class TeamEventsConsumer(AsyncJsonWebsocketConsumer):
    """Stream a team's events (releases, job progress, alerts) to its members' browsers."""

    group: str = ""

    async def connect(self) -> None:
        user = self.scope.get("user")
        slug = self.scope["url_route"]["kwargs"]["team"]
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        # An outsider is refused exactly like a team that does not exist.
        if not await _may_view(user, slug):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = team_group(slug)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def team_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])


class EndpointMetricsConsumer(AsyncJsonWebsocketConsumer):
    """Stream an endpoint's per-second, per-version metrics, merged across web processes, to its team's browsers."""

    group: str = ""

    async def connect(self) -> None:
        user = self.scope.get("user")
        name = self.scope["url_route"]["kwargs"]["name"]
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        # Another team's endpoint is refused exactly like one that does not exist.
        if not await _may_view_endpoint(user, name):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = endpoint_group(name)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def endpoint_metrics(self, message: dict[str, Any]) -> None:
        await self.send_json(message["metrics"])
