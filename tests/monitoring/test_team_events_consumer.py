"""/ws/teams/{team}/events/: session-authenticated, team-isolated, carried through the real Redis layer."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from common.events import team_event_publish_async
from monitoring.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from teams.choices import Role
from tests.teams.factories import create_membership, create_team
from tests.websockets import session_cookie, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_suite_uses_the_redis_channel_layer() -> None:
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"


async def test_member_receives_team_events_through_redis() -> None:
    membership = await sync_to_async(create_membership)(
        team=await sync_to_async(create_team)(slug="alpha"), role=Role.VIEWER
    )
    cookie = await sync_to_async(session_cookie)(membership.user)
    communicator, connected, _ = await ws_connect("/ws/teams/alpha/events/", cookie)
    assert connected
    await team_event_publish_async(team="alpha", kind="token.create", data={"prefix": "mdk_12345678"})
    assert await communicator.receive_json_from(timeout=2) == {
        "kind": "token.create",
        "data": {"prefix": "mdk_12345678"},
    }
    await communicator.disconnect()


async def test_anonymous_socket_is_refused() -> None:
    await sync_to_async(create_team)(slug="alpha")
    _communicator, connected, code = await ws_connect("/ws/teams/alpha/events/", None)
    assert not connected
    assert code == CLOSE_UNAUTHENTICATED


async def test_socket_for_another_team_is_refused_and_hears_nothing() -> None:
    alpha = await sync_to_async(create_team)(slug="alpha")
    await sync_to_async(create_team)(slug="bravo")
    outsider = await sync_to_async(create_membership)(role=Role.ADMIN)  # admin of some other team
    cookie = await sync_to_async(session_cookie)(outsider.user)
    for slug in ("bravo", "does-not-exist"):
        communicator, connected, code = await ws_connect(f"/ws/teams/{slug}/events/", cookie)
        assert not connected
        assert code == CLOSE_FORBIDDEN
    member = await sync_to_async(create_membership)(team=alpha)
    communicator, connected, _ = await ws_connect(
        "/ws/teams/alpha/events/", await sync_to_async(session_cookie)(member.user)
    )
    assert connected
    await team_event_publish_async(team="bravo", kind="release", data={})
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
