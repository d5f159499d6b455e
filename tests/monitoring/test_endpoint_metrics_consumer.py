"""/ws/endpoints/{name}/: session-authenticated, team-isolated, per-second metrics relayed unchanged."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from deployments.services import endpoint_create
from monitoring.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from monitoring.publish import endpoint_metrics_publish
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.models import Team
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version
from tests.websockets import session_cookie, ws_connect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("artifact_dir")]


def _metrics(endpoint: str, second: int = 1764412345) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "second": second,
        "process": "host:1234",
        "versions": [
            {
                "version": 2,
                "role": "primary",
                "count": 10,
                "errors": 0,
                "p50_ms": 0.5,
                "p95_ms": 1.0,
                "p99_ms": 2.5,
                "rows": 10,
                "codes": {"200": 10},
            }
        ],
    }


@pytest.fixture
def endpoints(make_member, team_a: Team, team_b: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Endpoint "iris" of team alpha and endpoint "wine" of team bravo."""
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    for team, name in ((team_a, "iris"), (team_b, "wine")):
        actor = Actor(user=make_member(team=team, role=Role.DEVELOPER).user)
        model = registered_model_create(actor=actor, team=team, name=name)
        endpoint_create(actor=actor, model=model, name=name, version=add_version(model, actor, tmp_path, seed=1))


@pytest.fixture
def viewer_cookie(endpoints: None, make_member, team_a: Team) -> bytes:
    return session_cookie(make_member(team=team_a, role=Role.VIEWER).user)


@pytest.fixture
def outsider_cookie(endpoints: None, make_member, team_b: Team) -> bytes:
    return session_cookie(make_member(team=team_b, role=Role.ADMIN).user)


async def test_anonymous_socket_is_refused(endpoints: None) -> None:
    _communicator, connected, code = await ws_connect("/ws/endpoints/iris/", None)
    assert not connected
    assert code == CLOSE_UNAUTHENTICATED


async def test_another_teams_endpoint_is_refused_like_a_missing_one(outsider_cookie: bytes) -> None:
    for name in ("iris", "does-not-exist"):
        _communicator, connected, code = await ws_connect(f"/ws/endpoints/{name}/", outsider_cookie)
        assert not connected
        assert code == CLOSE_FORBIDDEN


async def test_viewer_receives_the_published_metrics_unchanged(viewer_cookie: bytes) -> None:
    communicator, connected, _ = await ws_connect("/ws/endpoints/iris/", viewer_cookie)
    assert connected
    await endpoint_metrics_publish(endpoint="iris", metrics=_metrics("iris"))
    assert await communicator.receive_json_from(timeout=2) == _metrics("iris")
    await communicator.disconnect()


async def test_metrics_of_another_endpoint_are_not_received(viewer_cookie: bytes) -> None:
    communicator, connected, _ = await ws_connect("/ws/endpoints/iris/", viewer_cookie)
    assert connected
    await endpoint_metrics_publish(endpoint="wine", metrics=_metrics("wine"))
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_metrics_from_another_thread_reach_the_socket_through_redis(viewer_cookie: bytes, settings: Any) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [settings.REDIS_URL]}}
    }
    communicator, connected, _ = await ws_connect("/ws/endpoints/iris/", viewer_cookie)
    assert connected

    async def publish() -> asyncio.AbstractEventLoop:
        await endpoint_metrics_publish(endpoint="iris", metrics=_metrics("iris", 7))
        return asyncio.get_running_loop()

    # A fresh thread runs its own event loop with its own Redis connections, as another web process would.
    with ThreadPoolExecutor(max_workers=1) as pool:
        published = pool.submit(async_to_sync(publish))
        assert await communicator.receive_json_from(timeout=2) == _metrics("iris", 7)
        assert await asyncio.wrap_future(published) is not asyncio.get_running_loop()
    await communicator.disconnect()
