"""Inference authentication comes first, on every protocol and every per-model API, through ASGI and the fast path.

Without a valid token (none, a malformed header, an unknown, expired or revoked token, a token whose user left the
team) every name that is not a public endpoint gets the same 401 with a `WWW-Authenticate: Bearer` challenge, whether
the name is a private endpoint, unknown, or an endpoint that cannot load. A valid token gets exactly the same 404 for
another team's endpoint (broken or not) as for a name that does not exist. Public endpoints ignore tokens.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError
from django.utils import timezone

from deployments.services import endpoint_create
from serving.auth import token_cache
from serving.router import router_get
from serving.views import ROUTES
from teams.choices import Role
from teams.models import ApiToken, Membership
from teams.permissions import Actor
from teams.services import api_token_create, api_token_revoke
from tests.conftest import Member
from tests.deployments.test_endpoint_apis import add_version
from tests.serving.conftest import Deployed

pytestmark = pytest.mark.django_db(transaction=True)

ROW = [5.1, 3.5, 1.4, 0.2]
MISSING = "missing token: send 'Authorization: Bearer <token>' with a token of the endpoint's team"
MALFORMED = "malformed Authorization header: send 'Authorization: Bearer <token>'"
INVALID = "invalid token: it is unknown, expired or revoked, or its user is no longer a member of its team"
CHALLENGE = 'Bearer realm="modeldeck"'
INVALID_CHALLENGE = 'Bearer realm="modeldeck", error="invalid_token"'
UNKNOWN_TOKEN = "mdk_00000000" + "A" * 43  # well formed, never issued


@dataclass(frozen=True)
class Api:
    """One per-model API: its method, its path for an endpoint name, a body, and what a caller let in gets."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    allowed: int = 200  # classify/regress answer 400 (use ':predict') once the caller is let in

    def url(self, name: str) -> str:
        return self.path.format(name=name)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


V2_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}
EXAMPLES = {"examples": [{"x": 1.0}]}
MODEL_APIS = [
    Api("POST", "/v2/models/{name}/infer", V2_BODY),
    Api("POST", "/v2/models/{name}/versions/1/infer", V2_BODY),
    Api("GET", "/v2/models/{name}"),
    Api("GET", "/v2/models/{name}/versions/1"),
    Api("GET", "/v2/models/{name}/ready"),
    Api("GET", "/v2/models/{name}/versions/1/ready"),
    Api("POST", "/v1/models/{name}:predict", {"instances": [ROW]}),
    Api("POST", "/v1/models/{name}/versions/1:predict", {"instances": [ROW]}),
    Api("POST", "/v1/models/{name}/labels/stable:predict", {"instances": [ROW]}),
    Api("GET", "/v1/models/{name}"),
    Api("GET", "/v1/models/{name}/metadata"),
    Api("POST", "/v1/models/{name}:classify", EXAMPLES, allowed=400),
    Api("POST", "/v1/models/{name}:regress", EXAMPLES, allowed=400),
    Api("POST", "/mlflow/{name}/invocations", {"inputs": [ROW]}),
    Api("GET", "/mlflow/{name}/ping"),
    Api("GET", "/mlflow/{name}/health"),
    Api("GET", "/mlflow/{name}/version"),
]
SERVER_APIS = ["/v2", "/v2/health/live", "/v2/health/ready"]


def error_body(path: str, status: int, message: str) -> bytes:
    """The exact bytes of an error in the protocol of `path` (PROTOCOLS.md: V2 and TF Serving alike, MLflow its own)."""
    if path.startswith("/mlflow/"):
        code = {401: "UNAUTHENTICATED", 404: "RESOURCE_DOES_NOT_EXIST", 503: "TEMPORARILY_UNAVAILABLE"}[status]
        return json.dumps({"error_code": code, "message": message}).encode()
    return json.dumps({"error": message}).encode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def without_date(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name != "date"}


async def call(client: httpx.AsyncClient, api: Api, name: str, headers: dict[str, str]) -> httpx.Response:
    return await client.request(api.method, api.url(name), json=api.body, headers=headers)


@dataclass
class Tokens:
    """Alpha's own (valid) token, bravo's valid token, and tokens of alpha that no longer work."""

    own: str
    other_team: str
    revoked: str
    expired: str
    left_team: str
    deactivated: str


@pytest.fixture
def tokens(deployed: Deployed, make_member: Any) -> Tokens:
    def alpha(username: str) -> Member:
        member: Member = make_member(team=deployed.dev.team, role=Role.VIEWER, username=username)
        return member

    revoked = alpha("revoked")
    api_token_revoke(actor=Actor(user=revoked.user), token=ApiToken.objects.get(user=revoked.user))
    expired = alpha("expired")
    ApiToken.objects.filter(user=expired.user).update(expires_at=timezone.now() - timedelta(minutes=1))
    # Removed by other means than membership_remove (which also revokes): the token itself is still active.
    left = alpha("left")
    Membership.objects.filter(user=left.user).delete()
    deactivated = alpha("deactivated")
    deactivated.user.is_active = False
    deactivated.user.save(update_fields=["is_active"])
    return Tokens(
        own=deployed.dev.token,
        other_team=deployed.outsider.token,
        revoked=revoked.token,
        expired=expired.token,
        left_team=left.token,
        deactivated=deactivated.token,
    )


@pytest.fixture
def broken(deployed: Deployed, make_member: Any, artifact_dir: Path, tmp_path: Path) -> None:
    """Alpha's endpoints "iris-broken" (private) and "iris-public-broken", whose only release cannot load."""
    actor = Actor(user=make_member(team=deployed.dev.team, role=Role.DEVELOPER, username="breaker").user)
    version = add_version(deployed.model, actor, tmp_path, 3)
    endpoint_create(actor=actor, model=deployed.model, name="iris-broken", version=version)
    endpoint_create(actor=actor, model=deployed.model, name="iris-public-broken", version=version, public=True)
    (artifact_dir / version.artifact_key).unlink()


def no_valid_token(tokens: Tokens) -> list[tuple[dict[str, str], str, str]]:
    """Every way to come without a valid token: the headers, the 401's message and its challenge."""
    return [
        ({}, MISSING, CHALLENGE),
        ({"Authorization": ""}, MISSING, CHALLENGE),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, MALFORMED, CHALLENGE),
        ({"Authorization": "Bearer"}, MALFORMED, CHALLENGE),
        ({"Authorization": f"Token {tokens.own}"}, MALFORMED, CHALLENGE),
        (bearer("garbage"), INVALID, INVALID_CHALLENGE),
        (bearer(UNKNOWN_TOKEN), INVALID, INVALID_CHALLENGE),
        (bearer(tokens.revoked), INVALID, INVALID_CHALLENGE),
        (bearer(tokens.expired), INVALID, INVALID_CHALLENGE),
        (bearer(tokens.left_team), INVALID, INVALID_CHALLENGE),
        (bearer(tokens.deactivated), INVALID, INVALID_CHALLENGE),
    ]


def test_every_per_model_api_is_covered() -> None:
    """MODEL_APIS reaches every route that names an endpoint (a new one must be added here, and so be tested)."""
    per_model = {
        (pattern.pattern, method) for pattern, methods in ROUTES if "?P<name>" in pattern.pattern for method in methods
    }
    reached = set()
    for api in MODEL_APIS:
        pattern, methods = next((p, m) for p, m in ROUTES if p.match(api.url("iris")))
        assert api.method in methods, api
        reached.add((pattern.pattern, api.method))
    assert reached == per_model


@pytest.mark.parametrize("api", MODEL_APIS, ids=str)
async def test_without_a_valid_token_every_name_gets_the_same_401(
    client: httpx.AsyncClient, deployed: Deployed, tokens: Tokens, broken: None, api: Api
) -> None:
    # A private endpoint, a name that does not exist, a private endpoint that cannot load: nothing tells them apart.
    for name in ("iris", "nope", "iris-broken"):
        for headers, message, challenge in no_valid_token(tokens):
            response = await call(client, api, name, headers)
            assert response.status_code == 401, (name, headers, response.text)
            assert response.content == error_body(api.path, 401, message), (name, headers)
            assert response.headers["content-type"] == "application/json"
            assert response.headers["www-authenticate"] == challenge, (name, headers)


@pytest.mark.parametrize("api", MODEL_APIS, ids=str)
async def test_a_valid_token_gets_its_teams_endpoints_and_the_same_404_for_any_other_name(
    client: httpx.AsyncClient, deployed: Deployed, tokens: Tokens, broken: None, api: Api
) -> None:
    own = await call(client, api, "iris", bearer(tokens.own))
    assert own.status_code == api.allowed, own.text
    # Scheme names are case-insensitive (RFC 7235).
    lowercase = await call(client, api, "iris", {"Authorization": f"bearer {tokens.own}"})
    assert lowercase.status_code == api.allowed, lowercase.text

    # Another team's endpoint is answered exactly as a name that does not exist (same-length names: same headers).
    for theirs_name, unknown_name in (("iris", "nope"), ("iris-broken", "iris-absent")):
        unknown = await call(client, api, unknown_name, bearer(tokens.other_team))
        assert unknown.status_code == 404
        assert unknown.content == error_body(api.path, 404, f"endpoint '{unknown_name}' not found")
        theirs = await call(client, api, theirs_name, bearer(tokens.other_team))
        assert theirs.status_code == 404
        assert theirs.content == unknown.content.replace(f"'{unknown_name}'".encode(), f"'{theirs_name}'".encode())
        assert without_date(theirs) == without_date(unknown)
        assert "www-authenticate" not in theirs.headers
        # The owning team's token on the unknown name gets the very same bytes as the other team's.
        mine = await call(client, api, unknown_name, bearer(tokens.own))
        assert (mine.status_code, mine.content) == (404, unknown.content)

    # Only the owning team learns why its endpoint is down.
    down = await call(client, api, "iris-broken", bearer(tokens.own))
    reason = router_get().state.broken["iris-broken"].reason
    assert reason.startswith("release 1 cannot be loaded: ")
    assert (down.status_code, down.content) == (
        503,
        error_body(api.path, 503, f"endpoint 'iris-broken' is not ready: {reason}"),
    )


@pytest.mark.parametrize("api", MODEL_APIS, ids=str)
async def test_a_public_endpoint_ignores_tokens(
    client: httpx.AsyncClient, deployed: Deployed, tokens: Tokens, broken: None, api: Api
) -> None:
    for headers, _, _ in [({}, "", ""), *no_valid_token(tokens), (bearer(tokens.other_team), "", "")]:
        response = await call(client, api, "iris-public", headers)
        assert response.status_code == api.allowed, (headers, response.text)
        assert "www-authenticate" not in response.headers

    # A public endpoint with nothing loaded to serve is answered to anyone else as a name that does not exist;
    # only its own team learns that it is down, and why.
    for headers, message, challenge in no_valid_token(tokens):
        response = await call(client, api, "iris-public-broken", headers)
        assert (response.status_code, response.content) == (401, error_body(api.path, 401, message)), headers
        assert response.headers["www-authenticate"] == challenge, headers
    response = await call(client, api, "iris-public-broken", bearer(tokens.other_team))
    assert (response.status_code, response.content) == (
        404,
        error_body(api.path, 404, "endpoint 'iris-public-broken' not found"),
    )
    reason = router_get().state.broken["iris-public-broken"].reason
    response = await call(client, api, "iris-public-broken", bearer(tokens.own))
    assert (response.status_code, response.content) == (
        503,
        error_body(api.path, 503, f"endpoint 'iris-public-broken' is not ready: {reason}"),
    )


@pytest.mark.parametrize("path", SERVER_APIS)
async def test_server_apis_need_no_token_and_ignore_a_bad_one(
    client: httpx.AsyncClient, deployed: Deployed, path: str
) -> None:
    await sync_to_async(router_get().refresh, thread_sensitive=True)()
    for headers in ({}, bearer("garbage"), {"Authorization": "Basic dXNlcjpwYXNz"}):
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, (headers, response.text)
        assert "www-authenticate" not in response.headers


async def test_a_bad_token_is_looked_up_once_per_ttl_and_a_malformed_one_never(
    client: httpx.AsyncClient, deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = token_cache()
    monkeypatch.setattr(cache, "ttl", 3600.0)
    lookups = cache.lookups
    for name in ("iris", "nope", "iris", "other"):
        response = await client.post(f"/v2/models/{name}/infer", json=V2_BODY, headers=bearer(UNKNOWN_TOKEN))
        assert response.status_code == 401
    assert cache.lookups == lookups + 1
    for headers in (bearer("garbage"), bearer("mdk_short"), {"Authorization": "Basic dXNlcjpwYXNz"}, {}):
        assert (await client.post("/v2/models/iris/infer", json=V2_BODY, headers=headers)).status_code == 401
    assert cache.lookups == lookups + 1


async def test_a_cached_token_stops_working_the_moment_it_expires(
    client: httpx.AsyncClient, deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = token_cache()
    # Remembered for an hour: only the token's own expiry can end it within this test.
    monkeypatch.setattr(cache, "ttl", 3600.0)
    assert (await client.post("/v2/models/iris/infer", json=V2_BODY, headers=deployed.auth())).status_code == 200
    expires_at = timezone.now() + timedelta(seconds=1.5)
    issued = await sync_to_async(api_token_create, thread_sensitive=True)(
        actor=Actor(user=deployed.dev.user),
        team=deployed.dev.team,
        name="short",
        role=Role.VIEWER,
        expires_at=expires_at,
    )
    response = await client.post("/v2/models/iris/infer", json=V2_BODY, headers=bearer(issued.raw))
    assert response.status_code == 200, response.text
    lookups = cache.lookups
    await asyncio.sleep(max(0.0, (expires_at - timezone.now()).total_seconds()) + 0.05)

    response = await client.post("/v2/models/iris/infer", json=V2_BODY, headers=bearer(issued.raw))
    assert (response.status_code, response.content) == (401, error_body("/v2/", 401, INVALID))
    assert response.headers["www-authenticate"] == INVALID_CHALLENGE
    assert cache.lookups == lookups + 1  # checked again at expiry, not served from the hour-long cache


async def test_a_database_failure_while_checking_a_token_is_no_verdict_on_it(
    client: httpx.AsyncClient, deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token verified within the grace keeps its answer; any other gets 503 with Retry-After: neither 401 nor 404
    (nothing is known of it), nor 500 (nothing is broken). tests/serving/test_postgres_outage.py stops a real one."""

    def unreachable(raw: str) -> tuple[int | None, float]:
        raise OperationalError("the database is away")

    await sync_to_async(router_get().refresh, thread_sensitive=True)()
    assert (await client.post("/v2/models/iris/infer", json=V2_BODY, headers=deployed.auth())).status_code == 200
    monkeypatch.setattr(token_cache(), "ttl", 0.0)  # every request asks the database
    monkeypatch.setattr("serving.auth.token_check", unreachable)
    response = await client.post("/v2/models/iris/infer", json=V2_BODY, headers=deployed.auth())
    assert response.status_code == 200, response.text
    # The snapshot is current (the release stamp says so): an unknown name is told apart without the database.
    assert (await client.post("/v2/models/nope/infer", json=V2_BODY, headers=deployed.auth())).status_code == 404
    for name in ("iris", "nope"):
        response = await client.post(f"/v2/models/{name}/infer", json=V2_BODY, headers=bearer(UNKNOWN_TOKEN))
        assert (response.status_code, response.json(), response.headers["retry-after"]) == (
            503,
            {"error": "cannot verify the token now: the serving database cannot be reached; retry later"},
            "5",
        )

    async def database_away(request: object) -> None:
        raise OperationalError("the database is away")

    # Whatever else on the data plane finds the database away answers the same way.
    monkeypatch.setattr("serving.views.endpoint_resolve", database_away)
    response = await client.post("/mlflow/iris/invocations", json={"inputs": [ROW]}, headers=deployed.auth())
    assert (response.status_code, response.json(), response.headers["retry-after"]) == (
        503,
        {
            "error_code": "TEMPORARILY_UNAVAILABLE",
            "message": "cannot answer now: the serving database cannot be reached; retry later",
        },
        "5",
    )
    monkeypatch.undo()
    response = await client.post("/v2/models/iris/infer", json=V2_BODY, headers=deployed.auth())
    assert response.status_code == 200, response.text
