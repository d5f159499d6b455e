"""Every API error, whatever raised it, comes back as {"error": {"code", "message", "detail"}}."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from teams.choices import Role

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_unauthenticated() -> None:
    error = assert_error(APIClient().get("/api/v1/teams"), 401, "not_authenticated")
    assert error["message"] == "Authentication credentials were not provided."


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer mdk_00000000nottherealsecret"])
def test_bad_bearer_headers(header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert_error(client.get("/api/v1/teams"), 401, "authentication_failed")


def test_malformed_json_is_a_400_that_changes_nothing(make_member) -> None:
    member = make_member(role=Role.ADMIN)
    response = member.token_client().generic(
        "POST", f"/api/v1/teams/{member.team.slug}/tokens", "{not json", content_type="application/json"
    )
    error = assert_error(response, 400, "parse_error")
    assert "JSON parse error" in error["detail"]["reason"]
    assert member.team.tokens.count() == 1


def test_validation_errors_name_each_field(make_member) -> None:
    member = make_member(role=Role.ADMIN)
    response = member.token_client().post(f"/api/v1/teams/{member.team.slug}/tokens", {"role": "root"}, format="json")
    error = assert_error(response, 400, "invalid")
    assert error["detail"] == {"name": ["This field is required."], "role": ['"root" is not a valid choice.']}


def test_wrong_media_type_and_method(make_member) -> None:
    member = make_member(role=Role.ADMIN)
    client = member.token_client()
    assert_error(
        client.post(f"/api/v1/teams/{member.team.slug}/tokens", "name=x", content_type="text/plain"),
        415,
        "unsupported_media_type",
    )
    assert_error(client.put("/api/v1/teams", {}, format="json"), 405, "method_not_allowed")


def test_unknown_api_path_is_json_too() -> None:
    error = assert_error(APIClient().get("/api/v1/no-such-thing"), 404, "not_found")
    assert error["message"] == "No such API path: /api/v1/no-such-thing"


def test_unexpected_exceptions_become_a_logged_500(make_member, monkeypatch, caplog) -> None:
    member = make_member(role=Role.ADMIN)

    def explode(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("teams.apis.team_list_with_roles", explode)
    error = assert_error(member.token_client().get("/api/v1/teams"), 500, "server_error")
    assert "boom" not in error["message"]
    assert "Unhandled error in TeamListApi" in caplog.text
