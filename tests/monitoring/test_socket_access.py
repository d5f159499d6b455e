"""An open socket keeps checking its access: a member removed, logged out or deactivated stops streaming.

Through the real Redis channel layer: the membership APIs announce a change to the user's sockets after the commit;
a timer (MODELDECK_WS_RECHECK_SECONDS) catches what changed without an announcement.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session

from common.events import team_event_publish_async
from deployments.services import endpoint_create
from monitoring.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from monitoring.publish import endpoint_metrics_publish
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.models import Membership, Team
from teams.permissions import Actor
from tests.conftest import Member
from tests.deployments.test_endpoint_apis import add_version
from tests.websockets import session_cookie, ws_connect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("artifact_dir")]

CLOSED_WITHIN_SECONDS = 5.0


@pytest.fixture
def members(make_member, team_a: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Member, Member]:
    """An admin and a developer of team alpha, which has endpoint "iris"."""
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    admin = make_member(team=team_a, role=Role.ADMIN, username="ada")
    developer = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    actor = Actor(user=developer.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    endpoint_create(actor=actor, model=model, name="iris", version=add_version(model, actor, tmp_path, seed=1))
    return admin, developer


async def open_socket(path: str, cookie: bytes) -> WebsocketCommunicator:
    communicator, connected, code = await ws_connect(path, cookie)
    assert connected, code
    return communicator


async def close_code(communicator: WebsocketCommunicator) -> int:
    """The code the server closes the socket with, waiting at most CLOSED_WITHIN_SECONDS."""
    message = await communicator.receive_output(timeout=CLOSED_WITHIN_SECONDS)
    assert message["type"] == "websocket.close", message
    await communicator.disconnect()
    return int(message["code"])


async def still_streaming(events: WebsocketCommunicator, metrics: WebsocketCommunicator) -> None:
    await team_event_publish_async(team="alpha", kind="release", data={"release": 2})
    assert await events.receive_json_from(timeout=2) == {"kind": "release", "data": {"release": 2}}
    await endpoint_metrics_publish(endpoint="iris", metrics={"endpoint": "iris", "second": 1})
    assert await metrics.receive_json_from(timeout=2) == {"endpoint": "iris", "second": 1}


async def test_a_downgraded_member_keeps_streaming_and_a_removed_one_is_closed_within_5_s(
    members: tuple[Member, Member],
) -> None:
    admin, developer = members
    cookie = await sync_to_async(session_cookie)(developer.user)
    events = await open_socket("/ws/teams/alpha/events/", cookie)
    metrics = await open_socket("/ws/endpoints/iris/", cookie)

    # Re-checked at once; every role may view the team's streams, so both stay open and keep streaming.
    changed = await sync_to_async(admin.token_client().post)(
        "/api/v1/teams/alpha/members", {"username": "dev", "role": "viewer"}, format="json"
    )
    assert changed.status_code == 200, changed.content
    await still_streaming(events, metrics)

    removed = await sync_to_async(admin.token_client().delete)("/api/v1/teams/alpha/members/dev")
    assert removed.status_code == 204, removed.content
    assert await close_code(events) == CLOSE_FORBIDDEN
    assert await close_code(metrics) == CLOSE_FORBIDDEN


async def test_a_membership_deleted_without_the_service_is_caught_by_the_timer(
    members: tuple[Member, Member], settings: Any
) -> None:
    settings.MODELDECK_WS_RECHECK_SECONDS = 0.5
    _admin, developer = members
    events = await open_socket("/ws/teams/alpha/events/", await sync_to_async(session_cookie)(developer.user))
    metrics = await open_socket("/ws/endpoints/iris/", await sync_to_async(session_cookie)(developer.user))
    await asyncio.sleep(1.5)  # a few timer re-checks that find nothing wrong close nothing
    await still_streaming(events, metrics)

    await sync_to_async(Membership.objects.filter(user=developer.user).delete)()
    assert await close_code(events) == CLOSE_FORBIDDEN
    assert await close_code(metrics) == CLOSE_FORBIDDEN


def log_out(user: Any) -> None:
    Session.objects.all().delete()  # what logging out does to the session


def deactivate(user: Any) -> None:
    type(user).objects.filter(pk=user.pk).update(is_active=False)


def change_password(user: Any) -> None:
    user.set_password("a-new-password")
    user.save(update_fields=["password"])


@pytest.mark.parametrize("lose_the_login", [log_out, deactivate, change_password])
async def test_a_socket_whose_login_is_gone_is_closed_as_unauthenticated(
    members: tuple[Member, Member], settings: Any, lose_the_login: Any
) -> None:
    settings.MODELDECK_WS_RECHECK_SECONDS = 0.5
    _admin, developer = members
    events = await open_socket("/ws/teams/alpha/events/", await sync_to_async(session_cookie)(developer.user))

    await sync_to_async(lose_the_login)(developer.user)
    assert await close_code(events) == CLOSE_UNAUTHENTICATED
