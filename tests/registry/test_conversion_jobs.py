"""Conversions as jobs: automatic ones after an upload, one-click ones over the API, parity, no duplicates."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.test import Client

from registry.choices import JobStatus
from registry.models import Job, ModelVersion
from registry.services.jobs import job_run
from registry.tasks import JOB_HANDLERS, model_version_inspect_task
from teams.choices import Role
from teams.models import AuditEvent
from tests.registry import model_files

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    sent: list[int] = []
    monkeypatch.setattr("registry.tasks.job_run_task.delay", sent.append)
    monkeypatch.setattr("registry.tasks.model_version_inspect_task.delay", lambda version_id: None)
    return sent


@pytest.fixture
def dev(make_member, team_a):
    member = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    assert (
        member.token_client().post("/api/v1/models", {"team": "alpha", "name": "iris"}, format="json").status_code
        == 201
    )
    return member


def upload(client, path: Path) -> dict:
    file = io.BytesIO(path.read_bytes())
    file.name = path.name
    response = client.post("/api/v1/models/alpha/iris/versions", {"file": file}, format="multipart")
    assert response.status_code == 201, response.json()
    return response.json()


def run_queued(queued: list[int]) -> None:
    while queued:
        job_run(queued.pop(0), "test-worker", JOB_HANDLERS)


def test_a_keras_upload_ends_with_onnx_and_tflite_versions_that_pass_parity(
    dev, tmp_path, queued, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        upload(dev.token_client(), model_files.keras_file(tmp_path / "iris.keras"))
        model_version_inspect_task(ModelVersion.objects.get(number=1).pk)  # the worker's inspection
    assert len(queued) == 2
    run_queued(queued)
    versions = {v.number: v for v in ModelVersion.objects.select_related("parent")}
    assert sorted(versions) == [1, 2, 3]
    children = {v.recipe_key: v for v in versions.values() if v.parent}
    assert set(children) == {"onnx:none", "tflite:none"}
    for child in children.values():
        assert child.parent is not None
        assert child.parent.number == 1
        assert child.status == "ready"
        assert child.parity["passed"] is True, child.parity["reason"]
        assert child.parity["input_source"] == "synthetic"
        assert child.signature["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    onnx = children["onnx:none"]
    assert onnx.format == "onnx"
    assert onnx.filename == "iris-v1.onnx"
    assert max(o["max_abs_diff"] for o in onnx.parity["outputs"]) < 1e-4
    assert Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 2
    assert AuditEvent.objects.filter(action="version.convert").count() == 2

    # Converting again finds the version made before: no duplicate.
    client = dev.token_client()
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post("/api/v1/models/alpha/iris/versions/1/conversions", {"target": "onnx"}, format="json")
    assert again.status_code == 202
    run_queued(queued)
    job = client.get(f"/api/v1/jobs/{again.json()['id']}").json()
    assert job["status"] == "succeeded" and job["result_version"] == onnx.number and job["result"]["reused"] is True
    assert ModelVersion.objects.count() == 3


def test_onnx_quantization_is_one_click_away(dev, tmp_path, queued, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        upload(dev.token_client(), model_files.onnx_file(tmp_path / "iris.onnx"))
    # ONNX is servable as it is: no automatic conversion, only its benchmark.
    assert [Job.objects.get(pk=pk).kind for pk in queued] == ["benchmark"]
    client = dev.token_client()
    for quantization in ("int8", "float16"):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                "/api/v1/models/alpha/iris/versions/1/conversions",
                {"target": "onnx", "quantization": quantization},
                format="json",
            )
        assert response.status_code == 202
        assert response.json()["status"] == "queued"
    run_queued(queued)
    listed = client.get("/api/v1/models/alpha/iris/versions").json()
    by_recipe = {v["recipe"].get("quantization"): v for v in listed if v["parent"] == 1}
    assert set(by_recipe) == {"int8", "float16"}
    for quantization, version in by_recipe.items():
        assert version["parity"]["passed"] is True, version["parity"]["reason"]
        assert version["parity"]["recipe"] == {"target": "onnx", "quantization": quantization}


def test_unsupported_and_not_ready_conversions_are_refused(dev, tmp_path, queued) -> None:
    client = dev.token_client()
    upload(client, model_files.tflite_file(tmp_path / "iris.tflite"))
    refused = client.post(
        "/api/v1/models/alpha/iris/versions/1/conversions", {"target": "onnx", "quantization": "int8"}, format="json"
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "unsupported_conversion"
    bad = client.post("/api/v1/models/alpha/iris/versions/1/conversions", {"target": "coreml"}, format="json")
    assert bad.status_code == 400
    upload(client, model_files.keras_file(tmp_path / "iris.keras"))  # processing until a worker inspects it
    early = client.post("/api/v1/models/alpha/iris/versions/2/conversions", {"target": "onnx"}, format="json")
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "version_not_ready"
    assert not Job.objects.filter(kind="convert").exists()


def test_team_chooses_its_automatic_targets(
    make_member, dev, tmp_path, queued, django_capture_on_commit_callbacks
) -> None:
    admin = make_member(team=dev.team, role=Role.ADMIN).token_client()
    changed = admin.patch("/api/v1/teams/alpha", {"auto_convert_targets": ["onnx"]}, format="json")
    assert changed.status_code == 200
    assert changed.json()["auto_convert_targets"] == ["onnx"]
    assert (
        dev.token_client().patch("/api/v1/teams/alpha", {"auto_convert_targets": []}, format="json").status_code == 403
    )
    with django_capture_on_commit_callbacks(execute=True):
        upload(dev.token_client(), model_files.skops_file(tmp_path / "iris.skops"))
        model_version_inspect_task(ModelVersion.objects.get(number=1).pk)
    assert [Job.objects.get(pk=pk).params for pk in queued] == [{"target": "onnx", "quantization": "none"}]
    run_queued(queued)
    child = ModelVersion.objects.get(number=2)
    assert child.format == "onnx" and child.parity["passed"] is True
    labels = next(o for o in child.parity["outputs"] if o["parent"] == "label")
    assert labels["agreement"] == 1.0


def test_a_failed_parity_needs_an_admin_override_with_a_reason(make_member, dev, tmp_path, queued) -> None:
    upload(dev.token_client(), model_files.onnx_file(tmp_path / "iris.onnx"))
    version = ModelVersion.objects.get()
    ModelVersion.objects.filter(pk=version.pk).update(parity={"passed": False, "reason": "max abs diff 0.3 > 0.0001"})
    url = "/api/v1/models/alpha/iris/versions/1/parity-override"
    assert dev.token_client().post(url, {"reason": "known"}, format="json").status_code == 403
    admin = make_member(team=dev.team, role=Role.ADMIN).token_client()
    assert admin.post(url, {"reason": ""}, format="json").status_code == 400
    accepted = admin.post(url, {"reason": "float16 drift is fine for ranking"}, format="json")
    assert accepted.status_code == 200
    assert accepted.json()["parity_override"]["reason"] == "float16 drift is fine for ranking"
    event = AuditEvent.objects.get(action="version.parity_override")
    assert event.data["reason"] == "float16 drift is fine for ranking"
    ModelVersion.objects.filter(pk=version.pk).update(parity={"passed": True})
    assert admin.post(url, {"reason": "x"}, format="json").status_code == 409


def test_a_quantized_version_is_not_quantized_again(dev, tmp_path, queued, django_capture_on_commit_callbacks) -> None:
    client = dev.token_client()
    upload(client, model_files.onnx_file(tmp_path / "iris.onnx"))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/api/v1/models/alpha/iris/versions/1/conversions",
            {"target": "onnx", "quantization": "int8"},
            format="json",
        )
    run_queued(queued)
    again = client.post(
        "/api/v1/models/alpha/iris/versions/2/conversions", {"target": "onnx", "quantization": "float16"}, format="json"
    )
    assert again.status_code == 422
    assert again.json()["error"]["code"] == "already_quantized"
    browser = Client()
    browser.force_login(dev.user)
    assert "data-recipe=" in browser.get("/teams/alpha/models/iris/versions/1/").content.decode()
    assert "data-recipe=" not in browser.get("/teams/alpha/models/iris/versions/2/").content.decode()


def test_a_conversion_that_ends_after_its_model_was_archived_is_archived_with_it(
    dev, tmp_path, queued, django_capture_on_commit_callbacks
) -> None:
    client = dev.token_client()
    with django_capture_on_commit_callbacks(execute=True):
        upload(client, model_files.onnx_file(tmp_path / "iris.onnx"))
        model_version_inspect_task(ModelVersion.objects.get(number=1).pk)
        converting = client.post(
            "/api/v1/models/alpha/iris/versions/1/conversions",
            {"target": "onnx", "quantization": "int8"},
            format="json",
        )
        assert converting.status_code in (200, 201, 202), converting.json()
        # Archived while the worker converts.
        assert client.post("/api/v1/models/alpha/iris/archive").status_code == 200
    run_queued(queued)
    child = ModelVersion.objects.get(parent__number=1, recipe_key="onnx:int8")
    model = child.model
    model.refresh_from_db()
    assert model.archived_at is not None and child.archived_at == model.archived_at
    # Unarchiving the model brings it back with the others archived with it.
    assert client.post("/api/v1/models/alpha/iris/unarchive").status_code == 200
    child.refresh_from_db()
    assert child.archived_at is None
