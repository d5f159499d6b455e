"""The OpenAPI schema: warning-free, one component per serializer, bearer tokens, pages and errors described."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS
from rest_framework.test import APIClient

from tests.conftest import Member

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


def _schema(member: Member) -> dict[str, Any]:
    response = member.token_client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def test_schema_generation_is_free_of_warnings_and_valid(tmp_path) -> None:
    # A warning is a wrong schema in waiting: a component-name collision, an authenticator or a field type it
    # cannot describe. drf-spectacular counts them across a process, so start from zero.
    GENERATOR_STATS.reset()
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(tmp_path / "schema.yaml"))


def test_each_request_body_has_a_component_of_its_own(make_member) -> None:
    schema = _schema(make_member())
    users: dict[str, list[str]] = {}
    for name, operation in _operations(schema):
        for media in operation.get("requestBody", {}).get("content", {}).values():
            users.setdefault(media["schema"]["$ref"], []).append(name)
    assert {ref: names for ref, names in users.items() if len(names) > 1} == {}
    components = schema["components"]["schemas"]
    assert "Input" not in components
    assert components["MemberListInput"]["required"] == ["role", "username"]
    assert "token" in components["TokenListCreated"]["properties"]


def test_every_operation_accepts_a_bearer_token(make_member) -> None:
    schema = _schema(make_member())
    assert schema["components"]["securitySchemes"]["bearerAuth"]["type"] == "http"
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    without = [name for name, operation in _operations(schema) if {"bearerAuth": []} not in operation["security"]]
    assert without == []


def test_the_audit_list_is_described_as_pages(make_member) -> None:
    schema = _schema(make_member())
    operation = schema["paths"]["/api/v1/audit"]["get"]
    assert sorted(parameter["name"] for parameter in operation["parameters"]) == ["limit", "offset", "team"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = schema["components"]["schemas"][ref.rpartition("/")[2]]
    assert sorted(page["properties"]) == ["count", "next", "previous", "results"]
    assert page["properties"]["results"]["items"] == {"$ref": "#/components/schemas/AuditEventOutput"}


def test_every_operation_describes_the_error_shape(make_member) -> None:
    schema = _schema(make_member())
    error = {"$ref": "#/components/schemas/ApiError"}
    for name, operation in _operations(schema):
        for status in ("400", "401", "403", "404", "429"):
            assert operation["responses"][status]["content"]["application/json"]["schema"] == error, (name, status)
    assert schema["components"]["schemas"]["ApiErrorBody"]["required"] == ["code", "detail", "message"]
    # Errors particular to an operation are declared by it, in the same shape.
    upload = schema["paths"]["/api/v1/models/{team}/{model}/versions"]["post"]["responses"]
    assert [status for status in upload if status >= "405"] == ["409", "413", "422", "429"]
    assert upload["413"]["content"]["application/json"]["schema"] == error


def test_an_upload_is_described_as_a_file(make_member) -> None:
    schema = _schema(make_member())
    operation = schema["paths"]["/api/v1/models/{team}/{model}/versions"]["post"]
    ref = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    form = schema["components"]["schemas"][ref.rpartition("/")[2]]
    assert form["properties"]["file"] == {"type": "string", "format": "binary"}
    assert form["properties"]["sample"] == {"type": "string", "format": "binary"}


def test_the_posts_that_take_an_idempotency_key_say_so(make_member) -> None:
    schema = _schema(make_member())
    taking = sorted(
        name
        for name, operation in _operations(schema)
        if any(parameter["name"] == "Idempotency-Key" for parameter in operation.get("parameters", []))
    )
    assert "POST /api/v1/endpoints/{name}/promote" in taking
    assert "POST /api/v1/models/{team}/{model}/versions" in taking
    for name, operation in _operations(schema):
        if name in taking:
            # The same key sent again with another request is refused.
            assert operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ApiError")
