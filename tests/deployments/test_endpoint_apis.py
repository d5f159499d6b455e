"""The control plane over the API: create, promote, canary, shadow, rollback; permissions, audit, isolation."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection

from deployments.models import Endpoint, Release
from deployments.services import endpoint_create, release_promote
from registry.models import ModelVersion, RegisteredModel
from registry.services.versions import Upload, model_version_create, registered_model_create
from teams.choices import Role
from teams.models import AuditEvent
from teams.permissions import Actor
from tests.registry.model_files import onnx_file


def add_version(model: RegisteredModel, actor: Actor, tmp_path: Path, seed: int) -> ModelVersion:
    path = onnx_file(tmp_path / f"m{seed}.onnx", seed=seed)
    upload = Upload(path, path.name, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    return model_version_create(actor=actor, model=model, upload=upload)


@pytest.fixture
def setup(make_member, team_a, tmp_path):
    dev = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    admin = make_member(team=team_a, role=Role.ADMIN, username="boss")
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    for seed in (1, 2, 3):
        add_version(model, actor, tmp_path, seed)
    return dev, admin, model


pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifact_dir")]


def test_create_promote_canary_and_rollback_keep_a_linear_history(setup) -> None:
    dev, _, _ = setup
    client = dev.token_client()
    created = client.post(
        "/api/v1/endpoints", {"name": "iris-staging", "model": "alpha/iris", "version": 1}, format="json"
    )
    assert created.status_code == 201, created.json()
    assert created.json()["release"] == {
        **created.json()["release"],
        "number": 1,
        "action": "create",
        "primary": 1,
        "canary": None,
        "canary_percent": 0,
        "shadow": None,
        "actor": "dev",
        "by": "dev",
        "rule": None,
    }
    url = "/api/v1/endpoints/iris-staging"
    assert (
        client.post(f"{url}/promote", {"version": 2, "reason": "better recall"}, format="json").json()["primary"] == 2
    )
    canary = client.post(f"{url}/promote", {"version": 3, "canary_percent": 10}, format="json").json()
    assert (canary["action"], canary["primary"], canary["canary"], canary["canary_percent"]) == ("canary", 2, 3, 10)
    shadowed = client.post(
        f"{url}/promote", {"version": 3, "canary_percent": 25, "shadow_version": 1}, format="json"
    ).json()
    assert (shadowed["canary_percent"], shadowed["shadow"]) == (25, 1)
    finished = client.post(f"{url}/promote", {"version": 3}, format="json").json()
    assert (finished["primary"], finished["canary"], finished["shadow"]) == (3, None, 1)  # the shadow stays
    cleared = client.post(f"{url}/promote", {"version": 3, "shadow_version": None}, format="json").json()
    assert cleared["shadow"] is None
    back = client.post(f"{url}/rollback", {"reason": "latency"}, format="json").json()
    # No canary live: the newest earlier primary other than v3 (release 4's v2) comes back, alone.
    assert back == {
        "number": 7,
        "action": "rollback",
        "primary": 2,
        "canary": None,
        "canary_percent": 0,
        "shadow": None,
        "actor": "dev",
        "by": "dev",
        "rule": None,
        "reason": "latency",
        "created_at": back["created_at"],
    }
    history = client.get(f"{url}/releases").json()
    assert [r["number"] for r in history] == [7, 6, 5, 4, 3, 2, 1]
    assert client.get(url).json()["release"]["number"] == 7
    actions = list(
        AuditEvent.objects.filter(action__startswith="endpoint.").order_by("id").values_list("action", flat=True)
    )
    assert actions == [
        "endpoint.create",
        "endpoint.promote",
        "endpoint.canary",
        "endpoint.canary",
        "endpoint.promote",
        "endpoint.promote",
        "endpoint.rollback",
    ]
    assert AuditEvent.objects.get(action="endpoint.rollback").data["reason"] == "latency"


def test_protected_endpoints_change_only_by_admins(setup) -> None:
    dev, admin, _ = setup
    body = {"name": "iris-prod", "model": "alpha/iris", "version": 1, "protected": True}
    refused = dev.token_client().post("/api/v1/endpoints", body, format="json")
    assert refused.status_code == 403
    assert admin.token_client().post("/api/v1/endpoints", body, format="json").status_code == 201
    assert (
        dev.token_client().post("/api/v1/endpoints/iris-prod/promote", {"version": 2}, format="json").status_code == 403
    )
    assert dev.token_client().post("/api/v1/endpoints/iris-prod/rollback", {}, format="json").status_code == 403
    assert (
        admin.token_client().post("/api/v1/endpoints/iris-prod/promote", {"version": 2}, format="json").status_code
        == 201
    )
    assert Release.objects.filter(endpoint__name="iris-prod").count() == 2


def test_only_deployable_versions_go_live(setup, tmp_path) -> None:
    dev, admin, model = setup
    client = dev.token_client()
    client.post("/api/v1/endpoints", {"name": "iris", "model": "alpha/iris", "version": 1}, format="json")
    ModelVersion.objects.filter(model=model, number=2).update(parity={"passed": False, "reason": "max abs diff 0.3"})
    failed = client.post("/api/v1/endpoints/iris/promote", {"version": 2}, format="json")
    assert failed.status_code == 409
    assert failed.json()["error"]["code"] == "parity_failed"
    admin.token_client().post(
        "/api/v1/models/alpha/iris/versions/2/parity-override", {"reason": "accepted drift"}, format="json"
    )
    assert client.post("/api/v1/endpoints/iris/promote", {"version": 2}, format="json").status_code == 201
    ModelVersion.objects.filter(model=model, number=3).update(status="processing")
    assert (
        client.post("/api/v1/endpoints/iris/promote", {"version": 3}, format="json").json()["error"]["code"]
        == "version_not_ready"
    )
    ModelVersion.objects.filter(model=model, number=3).update(status="ready", format="keras")
    assert (
        client.post("/api/v1/endpoints/iris/promote", {"version": 3}, format="json").json()["error"]["code"]
        == "not_servable"
    )
    assert client.post("/api/v1/endpoints/iris/promote", {"version": 9}, format="json").status_code == 404
    assert (
        client.post("/api/v1/endpoints/iris/promote", {"version": 1, "canary_percent": 0}, format="json").status_code
        == 400
    )
    assert (
        client.post("/api/v1/endpoints/iris/promote", {"version": 2, "canary_percent": 5}, format="json").status_code
        == 400
    )
    one = client.post("/api/v1/endpoints", {"name": "fresh", "model": "alpha/iris", "version": 1}, format="json")
    assert one.status_code == 201
    assert (
        client.post("/api/v1/endpoints/fresh/rollback", {}, format="json").json()["error"]["code"]
        == "nothing_to_roll_back"
    )
    assert Release.objects.filter(endpoint__name="iris").count() == 2


def test_names_are_global_and_other_teams_see_nothing(setup, make_member, team_b, tmp_path) -> None:
    dev, _, _ = setup
    dev.token_client().post("/api/v1/endpoints", {"name": "iris", "model": "alpha/iris", "version": 1}, format="json")
    outsider = make_member(team=team_b, role=Role.ADMIN)
    client = outsider.token_client()
    for url in ["/api/v1/endpoints/iris", "/api/v1/endpoints/iris/releases"]:
        assert client.get(url).status_code == 404
        assert client.get(url).json()["error"]["message"] == "Endpoint 'iris' not found."
    assert client.post("/api/v1/endpoints/iris/promote", {"version": 2}, format="json").status_code == 404
    assert client.post("/api/v1/endpoints/iris/rollback", {}, format="json").status_code == 404
    assert client.get("/api/v1/endpoints").json() == []
    b_model = registered_model_create(actor=Actor(user=outsider.user), team=team_b, name="other")
    add_version(b_model, Actor(user=outsider.user), tmp_path, 7)
    taken = client.post("/api/v1/endpoints", {"name": "iris", "model": "bravo/other", "version": 1}, format="json")
    assert taken.status_code == 409
    assert taken.json()["error"]["message"] == "The endpoint name 'iris' is taken."
    # Nor can B deploy A's model under a new name.
    assert (
        client.post("/api/v1/endpoints", {"name": "x", "model": "alpha/iris", "version": 1}, format="json").status_code
        == 404
    )
    assert Release.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_promotes_serialize(make_member, tmp_path) -> None:
    assert connection.vendor == "postgresql"
    member = make_member(role=Role.DEVELOPER)
    actor = Actor(user=member.user)
    model = registered_model_create(actor=actor, team=member.team, name="busy")
    versions = [add_version(model, actor, tmp_path, seed) for seed in (1, 2)]
    endpoint = endpoint_create(actor=actor, model=model, name="busy", version=versions[0])

    def promote(index: int) -> int:
        try:
            fresh = Endpoint.objects.get(pk=endpoint.pk)
            return release_promote(actor=Actor(user=member.user), endpoint=fresh, version=versions[index % 2]).number
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        numbers = list(pool.map(promote, range(12)))
    assert sorted(numbers) == list(range(2, 14))
    assert sorted(Release.objects.filter(endpoint=endpoint).values_list("number", flat=True)) == list(range(1, 14))


def test_deleting_an_endpoint_needs_its_name_again_and_is_audited(setup, make_member, team_b) -> None:
    dev, _, model = setup
    client = dev.token_client()

    def create(version: int) -> int:
        body = {"name": "iris", "model": "alpha/iris", "version": version}
        return client.post("/api/v1/endpoints", body, format="json").status_code

    assert create(1) == 201
    refused = client.delete("/api/v1/endpoints/iris")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "confirmation_required"
    assert "its callers get 404 from then on" in refused.json()["error"]["message"]
    assert client.delete("/api/v1/endpoints/iris?confirm=iri").status_code == 409
    viewer = make_member(team=dev.team, role=Role.VIEWER).token_client()
    assert viewer.delete("/api/v1/endpoints/iris?confirm=iris").status_code == 403
    outsider = make_member(team=team_b, role=Role.ADMIN).token_client()
    assert outsider.delete("/api/v1/endpoints/iris?confirm=iris").status_code == 404
    assert Endpoint.objects.filter(name="iris").exists()

    assert client.delete("/api/v1/endpoints/iris?confirm=iris").status_code == 204
    assert not Endpoint.objects.filter(name="iris").exists() and not Release.objects.exists()
    assert ModelVersion.objects.filter(model=model).count() == 3  # the versions stay
    event = AuditEvent.objects.get(action="endpoint.delete")
    assert event.data == {"endpoint": "iris", "model": "iris", "releases": 1, "primary": 1, "canary": None}
    assert client.get("/api/v1/endpoints/iris").status_code == 404
    # The name is free again.
    assert create(2) == 201
