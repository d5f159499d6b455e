"""Archiving models and versions over the API: refused while live, hidden from lists, never deployed, undone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from deployments.models import Endpoint, Release
from deployments.services import endpoint_create, release_promote
from registry.models import ModelVersion, RegisteredModel
from registry.services.archive import version_archive
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.models import AuditEvent
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version
from tests.registry.model_files import onnx_file
from tests.registry.test_version_apis import upload

pytestmark = pytest.mark.django_db

MODEL = "/api/v1/models/alpha/iris"


@pytest.fixture
def dev(make_member, team_a):
    return make_member(team=team_a, role=Role.DEVELOPER, username="dev")


@pytest.fixture
def model(dev, tmp_path) -> RegisteredModel:
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=dev.team, name="iris")
    for seed in (1, 2, 3):
        add_version(model, actor, tmp_path, seed)
    return model


def numbers(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [v["number"] for v in response.json()]


def test_a_version_is_archived_hidden_from_the_list_and_unarchived(dev, model) -> None:
    client = dev.token_client()
    archived = client.post(f"{MODEL}/versions/2/archive")
    assert archived.status_code == 200, archived.json()
    body = archived.json()
    assert (body["number"], body["archived_by"], body["artifacts_deleted_at"]) == (2, "dev", None)
    assert body["archived_at"] is not None
    assert ModelVersion.objects.get(model=model, number=2).archived_at is not None

    assert numbers(client.get(f"{MODEL}/versions")) == [3, 1]
    assert numbers(client.get(f"{MODEL}/versions?archived=true")) == [2]
    assert numbers(client.get(f"{MODEL}/versions?archived=all")) == [3, 2, 1]
    assert client.get(f"{MODEL}/versions?archived=maybe").status_code == 400
    # Still readable by number, with its state.
    assert client.get(f"{MODEL}/versions/2").json()["archived_at"] == body["archived_at"]

    # Archiving it again changes nothing (and audits nothing).
    assert client.post(f"{MODEL}/versions/2/archive").json()["archived_at"] == body["archived_at"]
    unarchived = client.post(f"{MODEL}/versions/2/unarchive")
    assert unarchived.status_code == 200
    assert (unarchived.json()["archived_at"], unarchived.json()["archived_by"]) == (None, None)
    assert numbers(client.get(f"{MODEL}/versions")) == [3, 2, 1]

    events = AuditEvent.objects.filter(action__in=["version.archive", "version.unarchive"]).order_by("id")
    assert [(e.action, e.data["number"], e.actor and e.actor.username) for e in events] == [
        ("version.archive", 2, "dev"),
        ("version.unarchive", 2, "dev"),
    ]


@pytest.mark.parametrize("role", ["primary", "canary", "shadow"])
def test_a_version_live_on_an_endpoint_is_not_archived(dev, model, role) -> None:
    actor = Actor(user=dev.user)
    versions = {v.number: v for v in model.versions.all()}
    endpoint = endpoint_create(actor=actor, model=model, name="iris-prod", version=versions[1])
    if role == "canary":
        release_promote(actor=actor, endpoint=endpoint, version=versions[2], canary_percent=10)
    elif role == "shadow":
        release_promote(actor=actor, endpoint=endpoint, version=versions[1], shadow_version=versions[2])
    number = 1 if role == "primary" else 2
    refused = dev.token_client().post(f"{MODEL}/versions/{number}/archive")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "version_in_use"
    assert error["message"].startswith(f"v{number} of 'iris' is live on iris-prod (v{number} {role}): promote")
    assert error["detail"] == {"endpoints": [{"endpoint": "iris-prod", "version": number, "role": role}]}
    assert ModelVersion.objects.get(model=model, number=number).archived_at is None
    assert not AuditEvent.objects.filter(action="version.archive").exists()


def test_a_version_that_served_before_may_be_archived(dev, model) -> None:
    actor = Actor(user=dev.user)
    versions = {v.number: v for v in model.versions.all()}
    endpoint = endpoint_create(actor=actor, model=model, name="iris-prod", version=versions[1])
    release_promote(actor=actor, endpoint=endpoint, version=versions[2])
    assert dev.token_client().post(f"{MODEL}/versions/1/archive").status_code == 200


def test_an_archived_version_is_never_deployed(dev, model) -> None:
    client = dev.token_client()
    assert client.post(f"{MODEL}/versions/3/archive").status_code == 200
    created = client.post("/api/v1/endpoints", {"name": "iris", "model": "alpha/iris", "version": 3}, format="json")
    assert created.status_code == 409
    assert created.json()["error"] == {
        "code": "archived",
        "message": "v3 of 'iris' is archived: unarchive it first.",
        "detail": {"version": 3},
    }
    body = {"name": "iris", "model": "alpha/iris", "version": 1}
    assert client.post("/api/v1/endpoints", body, format="json").status_code == 201
    for promote in ({"version": 3}, {"version": 3, "canary_percent": 10}, {"version": 1, "shadow_version": 3}):
        refused = client.post("/api/v1/endpoints/iris/promote", promote, format="json")
        assert refused.status_code == 409, promote
        assert refused.json()["error"]["code"] == "archived"
    assert Release.objects.count() == 1
    # Nor converted or benchmarked: nothing new comes from an archived version.
    assert client.post(f"{MODEL}/versions/3/benchmarks").status_code == 409
    conversion = client.post(
        f"{MODEL}/versions/3/conversions", {"target": "onnx", "quantization": "int8"}, format="json"
    )
    assert conversion.status_code == 409 and conversion.json()["error"]["code"] == "archived"


def test_a_model_is_archived_with_its_versions_once_no_endpoint_serves_it(dev, model, tmp_path) -> None:
    client = dev.token_client()
    assert client.post(f"{MODEL}/versions/1/archive").status_code == 200  # on its own, before the model
    for name, number in (("iris-prod", 2), ("iris-staging", 3)):
        body = {"name": name, "model": "alpha/iris", "version": number}
        assert client.post("/api/v1/endpoints", body, format="json").status_code == 201
    refused = client.post(f"{MODEL}/archive")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "model_in_use"
    assert error["message"] == (
        "'iris' is still served by iris-prod (v2 primary), iris-staging (v3 primary): delete those endpoints before "
        "archiving the model."
    )
    assert RegisteredModel.objects.get(pk=model.pk).archived_at is None

    for name in ("iris-prod", "iris-staging"):
        assert client.delete(f"/api/v1/endpoints/{name}?confirm={name}").status_code == 204
    archived = client.post(f"{MODEL}/archive")
    assert archived.status_code == 200, archived.json()
    assert (archived.json()["archived_by"], archived.json()["version_count"]) == ("dev", 3)
    assert set(ModelVersion.objects.filter(model=model, archived_at__isnull=True)) == set()
    assert AuditEvent.objects.get(action="model.archive").data == {"name": "iris", "versions": [2, 3]}

    # Hidden from the model list, listed on demand, still readable by name.
    def names(query: str = "") -> list[str]:
        return [m["name"] for m in client.get(f"/api/v1/models?team=alpha{query}").json()]

    registered_model_create(actor=Actor(user=dev.user), team=dev.team, name="other")
    assert names() == ["other"]
    assert names("&archived=true") == ["iris"]
    assert names("&archived=all") == ["iris", "other"]
    assert client.get(MODEL).json()["archived_at"] == archived.json()["archived_at"]

    # No new version, no endpoint, no unarchiving one of its versions while it is archived.
    new = upload(client, onnx_file(tmp_path / "new.onnx", seed=9))
    assert new.status_code == 409
    assert new.json()["error"]["message"] == "'iris' is archived: unarchive it first to add versions."
    endpoint = client.post("/api/v1/endpoints", {"name": "again", "model": "alpha/iris", "version": 2}, format="json")
    assert (
        endpoint.status_code == 409 and endpoint.json()["error"]["message"] == "'iris' is archived: unarchive it first."
    )
    assert client.post(f"{MODEL}/versions/2/unarchive").json()["error"]["code"] == "model_archived"

    # Unarchiving brings back the versions archived with it, not v1, archived on its own before.
    assert client.post(f"{MODEL}/unarchive").json()["archived_at"] is None
    assert numbers(client.get(f"{MODEL}/versions")) == [3, 2]
    assert AuditEvent.objects.get(action="model.unarchive").data == {
        "name": "iris",
        "versions": [2, 3],
        "files_deleted": [],
    }
    assert upload(client, onnx_file(tmp_path / "new.onnx", seed=9)).status_code == 201


def test_an_upload_identical_to_an_archived_version_says_to_unarchive_it(dev, model, tmp_path) -> None:
    client = dev.token_client()
    assert client.post(f"{MODEL}/versions/1/archive").status_code == 200
    again = upload(client, onnx_file(tmp_path / "same.onnx", seed=1))
    assert again.status_code == 409
    assert "Unarchive v1 (it is archived), or upload the changed file." in again.json()["error"]["message"]


def test_viewers_may_not_archive_and_other_teams_see_nothing(dev, model, make_member, team_b) -> None:
    viewer = make_member(team=dev.team, role=Role.VIEWER).token_client()
    outsider = make_member(team=team_b, role=Role.ADMIN).token_client()
    for path in ("archive", "unarchive", "versions/1/archive", "versions/1/unarchive"):
        assert viewer.post(f"{MODEL}/{path}").status_code == 403, path
        assert outsider.post(f"{MODEL}/{path}").status_code == 404, path
    assert outsider.get("/api/v1/models?archived=all").json() == []
    assert ModelVersion.objects.filter(archived_at__isnull=False).count() == 0
    assert RegisteredModel.objects.filter(archived_at__isnull=False).count() == 0
    admin = make_member(team=dev.team, role=Role.ADMIN).token_client()
    assert admin.post(f"{MODEL}/versions/1/archive").status_code == 200


def test_archiving_announces_the_version_on_the_team_stream(
    dev, model, monkeypatch, django_capture_on_commit_callbacks
):
    sent: list[tuple[str, str, dict]] = []
    monkeypatch.setattr(
        "registry.services.version_events.team_event_publish",
        lambda *, team, kind, data: sent.append((team, kind, data)),
    )
    with django_capture_on_commit_callbacks(execute=True):
        dev.token_client().post(f"{MODEL}/versions/2/archive")
    assert sent == [("alpha", "version", {**sent[0][2], "number": 2, "archived": True})]


@pytest.mark.django_db(transaction=True)
def test_an_archive_and_a_promote_of_the_same_version_at_once_never_leave_it_live_and_archived(
    make_member, tmp_path, monkeypatch
) -> None:
    assert connection.vendor == "postgresql"
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    member = make_member(role=Role.DEVELOPER)
    actor = Actor(user=member.user)
    model = registered_model_create(actor=actor, team=member.team, name="race")
    v1, v2 = (add_version(model, actor, tmp_path, seed) for seed in (1, 2))
    endpoint = endpoint_create(actor=actor, model=model, name="race", version=v1)

    def attempt(kind: str) -> str:
        try:
            if kind == "archive":
                version_archive(actor=actor, version=ModelVersion.objects.get(pk=v2.pk))
            else:
                release_promote(actor=actor, endpoint=Endpoint.objects.get(pk=endpoint.pk), version=v2)
            return "ok"
        except Exception as exc:  # noqa: BLE001
            return getattr(exc, "code", repr(exc))
        finally:
            connection.close()

    for _ in range(5):
        ModelVersion.objects.filter(pk=v2.pk).update(archived_at=None)
        Release.objects.filter(endpoint=endpoint, number__gt=1).delete()
        with ThreadPoolExecutor(2) as pool:
            results = sorted(pool.map(attempt, ["archive", "promote"]))
        live = Release.objects.filter(endpoint=endpoint).order_by("-number").first()
        archived = ModelVersion.objects.get(pk=v2.pk).archived_at is not None
        assert results in (["archived", "ok"], ["ok", "version_in_use"]), results
        assert live is not None and not (archived and live.primary_id == v2.pk)
