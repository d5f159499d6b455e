"""Collecting the files of versions archived past the retention: only those no release keeps, once, rows kept."""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.db import connection
from django.utils import timezone

from deployments.services import endpoint_create, release_promote
from registry.models import ModelVersion, RegisteredModel
from registry.services.archive import artifacts_collect, version_archive
from registry.services.versions import Upload, model_version_create, registered_model_create
from registry.storage import artifact_key
from registry.tasks import artifacts_collect_task
from teams.choices import Role
from teams.models import AuditEvent
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version
from tests.registry.model_files import onnx_file

pytestmark = pytest.mark.django_db


@pytest.fixture
def actor(make_member, team_a) -> Actor:
    return Actor(user=make_member(team=team_a, role=Role.DEVELOPER, username="dev").user)


@pytest.fixture
def model(actor, team_a) -> RegisteredModel:
    return registered_model_create(actor=actor, team=team_a, name="iris")


def archived_days_ago(version: ModelVersion, actor: Actor, days: float) -> ModelVersion:
    version_archive(actor=actor, version=version)
    ModelVersion.objects.filter(pk=version.pk).update(archived_at=timezone.now() - timedelta(days=days))
    return ModelVersion.objects.get(pk=version.pk)


def stored(artifact_dir: Path, version: ModelVersion) -> bool:
    return (artifact_dir / artifact_key(version.sha256)).exists()


def test_files_of_versions_archived_past_the_retention_are_deleted_and_the_rows_stay(
    actor, model, tmp_path, artifact_dir, settings, dev_client
) -> None:
    settings.MODELDECK_ARTIFACT_RETENTION_DAYS = 30
    sample = tmp_path / "sample.npz"
    np.savez(sample, x=np.ones((2, 4), dtype=np.float32))
    path = onnx_file(tmp_path / "old.onnx", seed=1)
    old = model_version_create(
        actor=actor,
        model=model,
        upload=Upload(path, path.name, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size),
        sample=Upload(sample, sample.name, hashlib.sha256(sample.read_bytes()).hexdigest(), sample.stat().st_size),
    )
    recent, active = (add_version(model, actor, tmp_path, seed) for seed in (2, 3))
    old = archived_days_ago(old, actor, 31)
    recent = archived_days_ago(recent, actor, 29)
    sample_file = artifact_dir / old.sample_key
    assert stored(artifact_dir, old) and sample_file.exists()

    collected = artifacts_collect()
    assert [v.number for v in collected] == [1]
    old = ModelVersion.objects.get(pk=old.pk)
    assert old.artifacts_deleted_at is not None and (old.artifact_key, old.sample_key) == ("", "")
    assert old.sha256 and old.archived_at is not None  # the row stays, as history
    assert not stored(artifact_dir, old) and not sample_file.exists()
    assert stored(artifact_dir, recent) and stored(artifact_dir, active)
    event = AuditEvent.objects.get(action="version.artifacts_delete")
    assert (event.actor, event.target_id, event.data["number"], event.data["retention_days"]) == (
        None,
        str(old.pk),
        1,
        30,
    )
    assert event.data["keys"] == [artifact_key(old.sha256), sample_file.relative_to(artifact_dir).as_posix()]

    # Again: nothing more to do.
    assert artifacts_collect() == []
    assert AuditEvent.objects.filter(action="version.artifacts_delete").count() == 1

    # It cannot be unarchived, and its file answers 410.
    refused = dev_client.post("/api/v1/models/alpha/iris/versions/1/unarchive")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "artifacts_deleted"
    assert "its files were deleted on" in refused.json()["error"]["message"]
    gone = dev_client.get("/api/v1/models/alpha/iris/versions/1/artifact")
    assert gone.status_code == 410 and "after the retention period" in gone.json()["error"]["message"]
    assert dev_client.get("/api/v1/models/alpha/iris/versions/1").json()["artifacts_deleted_at"] is not None

    # The same file uploaded again is a new version (the collected one does not count as a duplicate).
    with path.open("rb") as handle:
        file = io.BytesIO(handle.read())
    file.name = "old.onnx"
    again = dev_client.post("/api/v1/models/alpha/iris/versions", {"file": file}, format="multipart")
    assert again.status_code == 201, again.json()
    assert stored(artifact_dir, old)


@pytest.fixture
def dev_client(actor):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(actor.user)
    return client


def test_a_file_another_version_holds_stays(actor, model, tmp_path, artifact_dir, team_a) -> None:
    other = registered_model_create(actor=actor, team=team_a, name="copy")
    old = add_version(model, actor, tmp_path, 1)
    twin = add_version(other, actor, tmp_path, 1)  # the same bytes: one stored object for both
    archived_days_ago(old, actor, 40)
    assert [v.pk for v in artifacts_collect()] == [old.pk]
    assert stored(artifact_dir, twin)
    assert ModelVersion.objects.get(pk=twin.pk).artifact_key == artifact_key(twin.sha256)


def test_what_an_endpoint_serves_or_could_roll_back_to_is_kept(actor, model, tmp_path, artifact_dir) -> None:
    v1, v2, v3, v4 = (add_version(model, actor, tmp_path, seed) for seed in (1, 2, 3, 4))
    endpoint = endpoint_create(actor=actor, model=model, name="iris", version=v1)
    release_promote(actor=actor, endpoint=endpoint, version=v2)
    release_promote(actor=actor, endpoint=endpoint, version=v3, canary_percent=10)
    # v1 served before v2: a rollback (after the canary's) brings it back. v4 never served.
    v1, v4 = (archived_days_ago(v, actor, 60) for v in (v1, v4))
    assert [v.number for v in artifacts_collect()] == [4]
    assert stored(artifact_dir, v1) and not stored(artifact_dir, v4)

    # Once v3 is the primary, a rollback returns to v2: nothing brings v1 back any more.
    release_promote(actor=actor, endpoint=endpoint, version=v3)
    assert [v.number for v in artifacts_collect()] == [1]
    assert not stored(artifact_dir, v1) and stored(artifact_dir, v2) and stored(artifact_dir, v3)


def test_the_beat_task_collects(actor, model, tmp_path, artifact_dir, settings) -> None:
    assert settings.CELERY_BEAT_SCHEDULE["artifacts-collect"]["task"] == "registry.tasks.artifacts_collect_task"
    old = archived_days_ago(add_version(model, actor, tmp_path, 1), actor, 31)
    artifacts_collect_task()
    assert not stored(artifact_dir, old)
    assert ModelVersion.objects.get(pk=old.pk).artifacts_deleted_at is not None


@pytest.mark.django_db(transaction=True)
def test_two_collectors_at_once_delete_each_version_once(make_member, tmp_path, artifact_dir, monkeypatch) -> None:
    assert connection.vendor == "postgresql"
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    member = make_member(role=Role.DEVELOPER)
    actor = Actor(user=member.user)
    model = registered_model_create(actor=actor, team=member.team, name="busy")
    versions = [archived_days_ago(add_version(model, actor, tmp_path, seed), actor, 31) for seed in range(1, 7)]

    def collect(_: int) -> list[int]:
        try:
            return [v.pk for v in artifacts_collect()]
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(collect, range(4)))
    done = [pk for run in runs for pk in run]
    assert sorted(done) == sorted(v.pk for v in versions)  # each once, whoever took it
    assert AuditEvent.objects.filter(action="version.artifacts_delete").count() == len(versions)
    assert not any(stored(artifact_dir, v) for v in versions)
