"""Publish events to a team's live stream (/ws/teams/{team}/events/), and access changes to a user's sockets.

Registry, deployments and monitoring all publish; monitoring's consumers deliver. Publishing sits in common, below
every app that publishes, so no app imports monitoring to announce its writes (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from common.channel_groups import team_group, user_group


async def team_event_publish_async(*, team: str, kind: str, data: dict[str, Any]) -> None:
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(team_group(team), {"type": "team.event", "event": {"kind": kind, "data": data}})


def team_event_publish(*, team: str, kind: str, data: dict[str, Any]) -> None:
    """Send an event to every socket of the team (from sync code: services, tasks)."""
    async_to_sync(team_event_publish_async)(team=team, kind=kind, data=data)


def user_sockets_recheck(*, user_id: int) -> None:
    """Tell every open socket of the user to re-check its access now (a membership of theirs changed)."""
    layer = get_channel_layer()
    assert layer is not None
    async_to_sync(layer.group_send)(user_group(user_id), {"type": "access.changed"})
