"""Websockets on Redis stay up: an idle socket outlives the old 5 s failure window, and Redis restarting is survived.

Through a real uvicorn and a real websocket client, as a browser connects. The idle drop came from redis-py's 5 s
read timeout racing channels_redis' 5 s BZPOPMIN; the restart 500 from a pooled connection the restart had closed
(config/settings/base.py, CHANNEL_LAYERS).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from common.channel_groups import team_group
from common.events import team_event_publish
from teams.choices import Role
from teams.models import Team
from tests.asgi_server import asgi_server
from tests.conftest import Member
from tests.faults.redis_server import private_redis
from tests.registry.test_worker_kill import database_url, wait_until
from tests.test_scale_out import Web
from tests.websockets import session_cookie

# Committed rows (the server reads them on its own connections); a suite with its own Redis server: `make test-heavy`.
pytestmark = [pytest.mark.heavy, pytest.mark.django_db(transaction=True)]

REDIS_PORTS = range(56390, 56396)  # this test's own Redis server, never the shared one
# Three times channels_redis' 5 s BZPOPMIN, the window in which every idle socket used to drop.
IDLE_SECONDS = 16


@contextmanager
def team_socket(base_url: str, member: Member) -> Iterator[ClientConnection]:
    """The team's event stream, opened as the team page's script opens it (no client pings: browsers send none)."""
    ws_url = base_url.replace("http://", "ws://")
    with connect(
        f"{ws_url}/ws/teams/{member.team.slug}/events/",
        origin=Origin(base_url),
        additional_headers={"Cookie": session_cookie(member.user).decode()},
        ping_interval=None,
        open_timeout=10,
    ) as socket:
        yield socket


def next_event(socket: ClientConnection, timeout: float = 5) -> Any:
    return json.loads(socket.recv(timeout=timeout))


def test_the_layer_outwaits_channels_redis_blocking_read_and_retries_a_closed_connection() -> None:
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    # channels_redis' receive blocks in BZPOPMIN for brpop_timeout seconds: a read must outwait its empty answer.
    assert host["socket_timeout"] >= 2 * RedisChannelLayer.brpop_timeout
    assert RedisConnectionError in host["retry_on_error"]
    assert host["retry"].get_retries() >= 1


def test_an_idle_socket_still_receives_events_after_three_old_failure_windows(make_member, team_a: Team) -> None:
    member = make_member(team=team_a, role=Role.VIEWER)
    with asgi_server() as url, team_socket(url, member) as socket:
        # Nothing arrives, and the server does not close the socket (recv would raise ConnectionClosed at once).
        with pytest.raises(TimeoutError):
            socket.recv(timeout=IDLE_SECONDS)
        team_event_publish(team="alpha", kind="release", data={"release": 2})
        assert next_event(socket) == {"kind": "release", "data": {"release": 2}}


def publish_to(redis_url: str, kind: str) -> None:
    """Publish an event to team alpha's sockets from a fresh layer (its own new connections) on that Redis."""

    async def publish() -> None:
        layer = RedisChannelLayer(hosts=[redis_url])
        await layer.group_send(team_group("alpha"), {"type": "team.event", "event": {"kind": kind, "data": {}}})
        await layer.close_pools()

    async_to_sync(publish)()


def test_after_redis_restarts_a_new_socket_is_accepted_and_an_open_one_is_not_left_deaf(
    make_member, team_a: Team, tmp_path: Path
) -> None:
    member = make_member(team=team_a, role=Role.VIEWER)
    with private_redis(REDIS_PORTS) as redis:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
        env |= {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url(),
            "REDIS_URL": redis.url(),
            "CELERY_BROKER_URL": redis.url(),
            "MODELDECK_VAR_DIR": str(tmp_path),
            "MODELDECK_PROMETHEUS_DIR": str(tmp_path / "prometheus"),
            "PYTHONUNBUFFERED": "1",
            "MODELDECK_WS_RECHECK_SECONDS": "1",
        }
        web = Web("web", env)
        try:
            web.wait_ready()
            with team_socket(web.url, member) as before:
                publish_to(redis.url(), "before")
                assert next_event(before)["kind"] == "before"

                redis.stop()
                redis.start()

                with team_socket(web.url, member) as after:  # a 500 here before the fix
                    publish_to(redis.url(), "after")
                    assert next_event(after)["kind"] == "after"

                # The socket open across the restart is never left open and deaf: it reconnected to Redis and, at
                # its next re-check, joined its groups again (the empty Redis had forgotten them), or, if Redis was
                # away for longer than the layer's retries, it was closed with a code the page reconnects after.
                closed_with: list[int | None] = []

                def before_hears_the_team_or_was_closed() -> bool:
                    publish_to(redis.url(), "again")
                    try:
                        return bool(next_event(before, timeout=0.5)["kind"] == "again")
                    except TimeoutError:
                        return False
                    except ConnectionClosed as closed:
                        closed_with.append(closed.rcvd.code if closed.rcvd else None)
                        return True

                wait_until(before_hears_the_team_or_was_closed, 10, "the socket open across the restart to hear again")
                assert all(code is None or code < 4000 for code in closed_with), closed_with
        except BaseException:
            print(web.dump())
            raise
        finally:
            web.kill()
