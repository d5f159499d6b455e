from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from teams.choices import Role
from teams.models import Team
from teams.permissions import Actor
from teams.services import api_token_create
from tests.teams.factories import create_membership, create_team, create_user


@pytest.fixture(autouse=True)
def _fresh_channel_layers() -> None:
    """Each test gets new channel layer instances: one keeps per-event-loop state (channels_redis' receive lock), and
    every test, and every live server a test starts, runs its own loop. A consumer still waiting on an earlier test's
    loop would otherwise leave the shared instance's lock held and bound to that loop."""
    from channels.layers import channel_layers

    channel_layers.backends = {}


@pytest.fixture(autouse=True)
def _fresh_router() -> Iterator[None]:
    """Each test starts with no serving router (nothing loaded, no follower thread) and no cached token answers."""
    from serving.auth import token_cache
    from serving.router import router_reset

    router_reset()
    token_cache().clear()
    yield
    router_reset()


@dataclass
class Member:
    """A user with a role in a team, and ready clients: one with a session, one with a bearer token."""

    user: Any
    team: Team
    role: str
    token: str

    def session_client(self) -> APIClient:
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(self.user)
        return client

    def token_client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.token}")
        return client


@pytest.fixture
def make_member(db: None) -> Callable[..., Member]:
    def make(team: Team | None = None, role: str = Role.DEVELOPER, username: str | None = None) -> Member:
        team = team or create_team()
        user = create_user(**({"username": username} if username else {}))
        create_membership(team=team, user=user, role=role)
        issued = api_token_create(actor=Actor(user=user), team=team, name="tests", role=role)
        return Member(user=user, team=team, role=role, token=issued.raw)

    return make


@pytest.fixture
def team_a(db: None) -> Team:
    return create_team(slug="alpha")


@pytest.fixture
def team_b(db: None) -> Team:
    return create_team(slug="bravo")


@pytest.fixture
def artifact_dir(settings: Any, tmp_path: Path) -> Path:
    """Point the artifact storage at a folder of this test's own."""
    location = tmp_path / "artifacts"
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)}},
    }
    return location
