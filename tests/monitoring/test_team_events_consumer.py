"""/ws/teams/{team}/events/: session-authenticated, team-isolated, carried through the real Redis layer."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from config.asgi import application
from monitoring.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from monitoring.events import team_event_publish_async
from teams.choices import Role
from tests.teams.factories import create_membership, create_team

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_suite_uses_the_redis_channel_layer() -> None:
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"


def _session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def _connect(path: str, cookie: bytes | None) -> tuple[WebsocketCommunicator, bool, int | None]:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    if not connected:
        # A refused consumer still runs (and waits on the channel layer) until the socket is gone; end it inside this
        # test's event loop, or the Redis layer's receive lock stays held by a loop the next test no longer runs.
        await communicator.disconnect()
    return communicator, connected, code


async def test_member_receives_team_events_through_redis() -> None:
    membership = await sync_to_async(create_membership)(
        team=await sync_to_async(create_team)(slug="alpha"), role=Role.VIEWER
    )
    cookie = await sync_to_async(_session_cookie)(membership.user)
    communicator, connected, _ = await _connect("/ws/teams/alpha/events/", cookie)
    assert connected
    await team_event_publish_async(team="alpha", kind="token.create", data={"prefix": "mdk_12345678"})
    assert await communicator.receive_json_from(timeout=2) == {
        "kind": "token.create",
        "data": {"prefix": "mdk_12345678"},
    }
    await communicator.disconnect()


async def test_anonymous_socket_is_refused() -> None:
    await sync_to_async(create_team)(slug="alpha")
    _communicator, connected, code = await _connect("/ws/teams/alpha/events/", None)
    assert not connected
    assert code == CLOSE_UNAUTHENTICATED


async def test_socket_for_another_team_is_refused_and_hears_nothing() -> None:
    alpha = await sync_to_async(create_team)(slug="alpha")
    await sync_to_async(create_team)(slug="bravo")
    outsider = await sync_to_async(create_membership)(role=Role.ADMIN)  # admin of some other team
    cookie = await sync_to_async(_session_cookie)(outsider.user)
    for slug in ("bravo", "does-not-exist"):
        communicator, connected, code = await _connect(f"/ws/teams/{slug}/events/", cookie)
        assert not connected
        assert code == CLOSE_FORBIDDEN
    member = await sync_to_async(create_membership)(team=alpha)
    communicator, connected, _ = await _connect(
        "/ws/teams/alpha/events/", await sync_to_async(_session_cookie)(member.user)
    )
    assert connected
    await team_event_publish_async(team="bravo", kind="release", data={})
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
