"""A NUL character in a path or query string gets a 400 before any view or query runs (PostgreSQL raised: 500)."""

from __future__ import annotations

import pytest

from teams.choices import Role

pytestmark = pytest.mark.django_db

API = [
    "/api/v1/models/alpha/ir\x00is",
    "/api/v1/models?search=a\x00b",
    "/api/v1/models/alpha/iris/versions?x\x00=1",
    "/api/v1/jobs?team=al\x00pha",
    "/api/v1/endpoints/ab\x00c",
    "/api/v1/endpoints/ab\x00c/releases",
    "/api/v1/audit?team=a\x00",
]
PAGES = ["/teams/al\x00pha/", "/teams/alpha/models/?q=a\x00b", "/endpoints/x\x00y/", "/teams/alpha/audit/?action=a\x00"]


def test_api_paths_and_queries_with_a_nul_are_a_400_in_the_api_shape(make_member, team_a) -> None:
    client = make_member(team=team_a, role=Role.ADMIN).token_client()
    for path in API:
        response = client.get(path)
        assert response.status_code == 400, path
        assert response.json() == {
            "error": {
                "code": "invalid",
                "message": "The request's path or query string holds a NUL character, which no name or filter can "
                "contain.",
                "detail": {},
            }
        }, path
    assert client.post("/api/v1/models?x=\x00", {"team": "alpha", "name": "m"}, format="json").status_code == 400
    assert not team_a.models.exists()


def test_pages_with_a_nul_are_a_400(make_member, team_a) -> None:
    client = make_member(team=team_a, role=Role.ADMIN).session_client()
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 400, path
        assert b"NUL character" in response.content
