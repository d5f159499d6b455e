"""createteam, issuetoken and the demo bootstrap that `make run` performs."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from teams.models import ApiToken, Membership, Team

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_createteam_then_issuetoken_gives_a_working_token() -> None:
    assert "Created team 'fraud' with admin 'carol'" in run("createteam", "fraud", "--admin", "carol")
    assert Membership.objects.get(team__slug="fraud", user__username="carol").role == "admin"
    token = run("issuetoken", "--team", "fraud", "--user", "carol", "--role", "developer").strip()
    assert token.startswith("mdk_")
    assert "\n" not in token
    stored = ApiToken.objects.get(user__username="carol")
    assert stored.role == "developer"
    assert stored.prefix == token[:12]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    me = client.get("/api/v1/me").json()
    assert me["username"] == "carol"
    assert me["teams"] == [{"slug": "fraud", "name": "fraud", "role": "developer"}]


def test_createteam_refuses_duplicates_and_bad_slugs() -> None:
    run("createteam", "fraud", "--admin", "carol")
    with pytest.raises(CommandError, match="already exists"):
        run("createteam", "fraud", "--admin", "dave")
    with pytest.raises(CommandError, match="lowercase letters"):
        run("createteam", "Bad Slug!", "--admin", "dave")
    assert Team.objects.count() == 1


def test_issuetoken_refuses_non_members_and_roles_above_the_member() -> None:
    run("createteam", "fraud", "--admin", "carol")
    get_user_model().objects.create_user("eve")
    with pytest.raises(CommandError, match="'eve' is not a member of team 'fraud'"):
        run("issuetoken", "--team", "fraud", "--user", "eve")
    Membership.objects.create(team=Team.objects.get(slug="fraud"), user=get_user_model().objects.get(username="eve"))
    with pytest.raises(CommandError, match="more than your own role"):
        run("issuetoken", "--team", "fraud", "--user", "eve", "--role", "admin")
    assert not ApiToken.objects.exists()


def test_bootstrapdemo_password_is_stable_across_restarts(settings, tmp_path) -> None:
    settings.MODELDECK_VAR_DIR = tmp_path
    first = run("bootstrapdemo")
    second = run("bootstrapdemo")
    assert first == second
    username, password = first.removeprefix("Login: ").strip().split(" / ")
    assert username == "admin"
    user = get_user_model().objects.get(username="admin")
    assert user.check_password(password)
    assert user.is_superuser
    assert Membership.objects.get(team__slug="demo", user=user).role == "admin"
    assert (tmp_path / "admin-password").stat().st_mode & 0o777 == 0o600
