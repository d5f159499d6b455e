"""The teams API: isolation between teams, role boundaries, token lifecycle, pinned query counts."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from teams.choices import Role
from teams.models import ApiToken, AuditEvent, Membership
from tests.teams.factories import create_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def a_admin(make_member, team_a):
    return make_member(team=team_a, role=Role.ADMIN, username="alice")


@pytest.fixture
def b_admin(make_member, team_b):
    return make_member(team=team_b, role=Role.ADMIN, username="bob")


def _session_without_csrf(member) -> APIClient:
    """A logged-in session client that skips CSRF, so the permission layer itself is what answers."""
    client = APIClient()
    client.force_login(member.user)
    return client


@pytest.mark.parametrize("via", ["session", "token"])
def test_team_b_cannot_read_team_a(via, a_admin, b_admin) -> None:
    client = b_admin.token_client() if via == "token" else _session_without_csrf(b_admin)
    a_token_id = ApiToken.objects.get(user=a_admin.user).pk
    for path in [
        "/api/v1/teams/alpha",
        "/api/v1/teams/alpha/members",
        "/api/v1/teams/alpha/tokens",
        "/api/v1/audit?team=alpha",
    ]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"error": {"code": "not_found", "message": "Team 'alpha' not found.", "detail": {}}}
    listed = client.get("/api/v1/teams").json()
    assert [t["slug"] for t in listed] == ["bravo"]
    audit = client.get("/api/v1/audit").json()
    assert audit["count"] > 0
    assert {e["team"] for e in audit["results"]} == {"bravo"}
    # ... the same answer as for a team that does not exist at all.
    assert client.delete(f"/api/v1/teams/alpha/tokens/{a_token_id}").status_code == 404
    assert client.get("/api/v1/teams/nope").json()["error"]["message"] == "Team 'nope' not found."


@pytest.mark.parametrize("via", ["session", "token"])
def test_team_b_cannot_change_team_a(via, a_admin, b_admin) -> None:
    client = b_admin.token_client() if via == "token" else _session_without_csrf(b_admin)
    a_token = ApiToken.objects.get(user=a_admin.user)
    before = (Membership.objects.count(), ApiToken.objects.count(), AuditEvent.objects.count())
    assert client.delete(f"/api/v1/teams/alpha/tokens/{a_token.pk}").status_code == 404
    assert (
        client.post("/api/v1/teams/alpha/members", {"username": "bob", "role": "admin"}, format="json").status_code
        == 404
    )
    assert client.delete("/api/v1/teams/alpha/members/alice").status_code == 404
    assert client.post("/api/v1/teams/alpha/tokens", {"name": "x", "role": "viewer"}, format="json").status_code == 404
    # B's admin token addressing its own team's URL with A's token id finds nothing either.
    assert client.delete(f"/api/v1/teams/bravo/tokens/{a_token.pk}").status_code == 404
    assert (Membership.objects.count(), ApiToken.objects.count(), AuditEvent.objects.count()) == before
    a_token.refresh_from_db()
    assert a_token.revoked_at is None


def test_a_token_of_one_team_sees_only_that_team_even_if_its_user_is_in_both(make_member, a_admin, team_b) -> None:
    Membership.objects.create(team=team_b, user=a_admin.user, role=Role.ADMIN)
    client = a_admin.token_client()
    assert [t["slug"] for t in client.get("/api/v1/teams").json()] == ["alpha"]
    assert client.get("/api/v1/teams/bravo").status_code == 404
    session = a_admin.session_client()
    assert [t["slug"] for t in session.get("/api/v1/teams").json()] == ["alpha", "bravo"]


@pytest.mark.parametrize(("role", "may_manage"), [(Role.VIEWER, False), (Role.DEVELOPER, False), (Role.ADMIN, True)])
def test_only_admins_add_members(role, may_manage, make_member, team_a) -> None:
    member = make_member(team=team_a, role=role)
    create_user(username="newcomer")
    response = member.token_client().post(
        "/api/v1/teams/alpha/members", {"username": "newcomer", "role": "viewer"}, format="json"
    )
    if may_manage:
        assert response.status_code == 200
        assert response.json()["username"] == "newcomer"
        assert Membership.objects.filter(team=team_a, user__username="newcomer", role="viewer").exists()
    else:
        assert response.status_code == 403
        body = response.json()["error"]
        assert body["code"] == "permission_denied"
        assert body["detail"] == {"team": "alpha", "action": "manage", "required_role": "admin", "role": role}
        assert not Membership.objects.filter(user__username="newcomer").exists()


def test_admin_token_capped_to_viewer_cannot_manage(make_member, team_a) -> None:
    admin = make_member(team=team_a, role=Role.ADMIN)
    created = admin.token_client().post("/api/v1/teams/alpha/tokens", {"name": "ro", "role": "viewer"}, format="json")
    assert created.status_code == 201
    viewer_client = APIClient()
    viewer_client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.json()['token']}")
    create_user(username="x1")
    response = viewer_client.post("/api/v1/teams/alpha/members", {"username": "x1", "role": "viewer"}, format="json")
    assert response.status_code == 403
    assert "through this token" in response.json()["error"]["message"]


def test_token_lifecycle_over_the_api(make_member, team_a) -> None:
    member = make_member(team=team_a, role=Role.DEVELOPER)
    client = member.token_client()
    created = client.post("/api/v1/teams/alpha/tokens", {"name": "pipeline", "role": "developer"}, format="json")
    assert created.status_code == 201
    body = created.json()
    secret = body.pop("token")
    assert secret.startswith(body["prefix"])
    assert body["role"] == "developer"
    assert body["active"] is True
    assert body["revoked_at"] is None
    # The secret is never listed again.
    listing = client.get("/api/v1/teams/alpha/tokens").json()
    assert all("token" not in t for t in listing)
    assert secret not in str(listing)
    new_client = APIClient()
    new_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert new_client.get("/api/v1/me").json()["token"]["prefix"] == body["prefix"]
    assert client.delete(f"/api/v1/teams/alpha/tokens/{body['id']}").status_code == 204
    refused = new_client.get("/api/v1/me")
    assert refused.status_code == 401
    assert refused.json()["error"] == {
        "code": "authentication_failed",
        "message": "Invalid, expired or revoked token.",
        "detail": {},
    }
    assert refused["WWW-Authenticate"] == 'Bearer realm="modeldeck"'


def test_developer_sees_only_own_tokens_admin_sees_all(make_member, team_a) -> None:
    dev = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    admin = make_member(team=team_a, role=Role.ADMIN, username="boss")
    assert {t["user"] for t in dev.token_client().get("/api/v1/teams/alpha/tokens").json()} == {"dev"}
    assert {t["user"] for t in admin.token_client().get("/api/v1/teams/alpha/tokens").json()} == {"dev", "boss"}


def test_token_role_above_own_is_refused_with_the_error_shape(make_member, team_a) -> None:
    viewer = make_member(team=team_a, role=Role.VIEWER)
    response = viewer.token_client().post("/api/v1/teams/alpha/tokens", {"name": "x", "role": "admin"}, format="json")
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "role_too_high",
            "message": "A token cannot have more than your own role in team 'alpha' (viewer).",
            "detail": {"role": "admin", "max_role": "viewer"},
        }
    }
    assert ApiToken.objects.filter(user=viewer.user).count() == 1


def test_session_writes_need_csrf(make_member, team_a) -> None:
    member = make_member(team=team_a, role=Role.DEVELOPER)
    response = member.session_client().post("/api/v1/teams/alpha/tokens", {"name": "x"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert "CSRF" in response.json()["error"]["message"]
    assert ApiToken.objects.filter(user=member.user).count() == 1


@pytest.mark.parametrize(
    "path", ["/api/v1/teams", "/api/v1/audit", "/api/v1/teams/alpha/tokens", "/api/v1/teams/alpha/members"]
)
def test_list_query_counts_do_not_grow_with_rows(path, make_member, team_a, django_assert_max_num_queries) -> None:
    admin = make_member(team=team_a, role=Role.ADMIN)
    for _ in range(5):
        make_member(team=team_a, role=Role.VIEWER)
    client = admin.token_client()
    client.get(path)  # warm: last-used write happens on first use
    with django_assert_max_num_queries(5) as captured:
        small = client.get(path)
    few_rows = len(captured.captured_queries)  # read now: each request clears the connection's query log
    assert few_rows > 0
    for _ in range(10):
        make_member(team=team_a, role=Role.DEVELOPER)
    with django_assert_max_num_queries(few_rows):
        large = client.get(path)
    assert small.status_code == large.status_code == 200
