from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_openapi_schema_lists_the_team_paths(make_member) -> None:
    member = make_member()
    response = member.token_client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in [
        "/api/v1/teams",
        "/api/v1/teams/{team}/tokens",
        "/api/v1/teams/{team}/tokens/{token_id}",
        "/api/v1/audit",
    ]:
        assert path in paths


def test_swagger_ui_is_served_without_a_cdn(make_member) -> None:
    member = make_member()
    client = APIClient()
    client.force_login(member.user)
    html = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in html
    assert "cdn.jsdelivr" not in html
    assert "unpkg.com" not in html
