"""Uploading versions over the API: formats, numbering, dedupe, samples, limits, and nothing left behind."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from rest_framework.test import APIClient

from registry.models import ModelVersion, RegisteredModel
from registry.services.versions import model_version_inspect
from teams.choices import Role
from teams.models import AuditEvent
from tests.registry.conftest import stored_files
from tests.registry.model_files import onnx_file

pytestmark = pytest.mark.django_db

ONNX_SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}],
}


@pytest.fixture
def dev(make_member, team_a):
    return make_member(team=team_a, role=Role.DEVELOPER, username="dev")


@pytest.fixture
def model(dev) -> RegisteredModel:
    response = dev.token_client().post("/api/v1/models", {"team": "alpha", "name": "iris"}, format="json")
    assert response.status_code == 201, response.json()
    return RegisteredModel.objects.get(name="iris")


def upload(
    client: APIClient, path: Path, name: str | None = None, url: str = "/api/v1/models/alpha/iris/versions", **fields
):
    with path.open("rb") as handle:
        file = io.BytesIO(handle.read())
    file.name = name or path.name
    return client.post(url, {"file": file, **fields}, format="multipart")


def test_onnx_upload_is_inspected_at_once_and_downloads_byte_identical(dev, model, tmp_path) -> None:
    path = onnx_file(tmp_path / "iris.onnx")
    client = dev.token_client()
    response = upload(client, path, description="first", tags="prod, iris")
    assert response.status_code == 201, response.json()
    body = response.json()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert body["model"] == "alpha/iris" and body["number"] == 1
    assert body["format"] == "onnx" and body["status"] == "ready" and body["status_message"] == ""
    assert body["signature"] == ONNX_SIGNATURE
    assert body["sha256"] == digest and body["size"] == path.stat().st_size
    assert body["framework"] == "onnx" and body["metadata"]["opset"] == 17
    assert body["tags"] == ["iris", "prod"] and body["description"] == "first"
    assert body["created_by"] == "dev" and body["parent"] is None

    download = client.get("/api/v1/models/alpha/iris/versions/1/artifact")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == path.read_bytes()
    assert download["X-Checksum-Sha256"] == digest
    assert 'filename="iris.onnx"' in download["Content-Disposition"]
    assert client.get("/api/v1/models/alpha/iris/versions/1").json() == body
    assert AuditEvent.objects.filter(action="version.create", team__slug="alpha").count() == 1


def test_versions_are_numbered_and_identical_bytes_are_stored_once(dev, model, tmp_path, artifact_dir) -> None:
    first, second = onnx_file(tmp_path / "a.onnx", seed=1), onnx_file(tmp_path / "b.onnx", seed=2)
    client = dev.token_client()
    assert [upload(client, p).json()["number"] for p in (first, second)] == [1, 2]
    # The same bytes for another model: a version of its own, the file stored once.
    assert client.post("/api/v1/models", {"team": "alpha", "name": "iris-copy"}, format="json").status_code == 201
    copy = upload(client, first, url="/api/v1/models/alpha/iris-copy/versions")
    assert copy.status_code == 201, copy.json()
    versions = ModelVersion.objects.all()
    assert len({v.artifact_key for v in versions}) == 2 and versions.count() == 3
    assert len(stored_files(artifact_dir)) == 2
    listed = client.get("/api/v1/models/alpha/iris/versions").json()
    assert [v["number"] for v in listed] == [2, 1]
    assert client.get("/api/v1/models/alpha/iris").json()["latest_version"] == 2


def test_the_same_file_again_names_the_version_that_has_it(dev, model, tmp_path, artifact_dir) -> None:
    path = onnx_file(tmp_path / "a.onnx", seed=1)
    client = dev.token_client()
    assert upload(client, path).status_code == 201
    audited = AuditEvent.objects.count()
    again = upload(client, path, name="renamed.onnx", description="again")
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "duplicate_version"
    assert error["detail"] == {"version": 1, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert error["message"].startswith("This file is identical to v1 of 'iris'")
    assert ModelVersion.objects.count() == 1 and AuditEvent.objects.count() == audited
    assert len(stored_files(artifact_dir)) == 1


def test_a_failed_versions_file_may_be_uploaded_again(dev, model, tmp_path) -> None:
    path = onnx_file(tmp_path / "a.onnx", seed=1)
    client = dev.token_client()
    assert upload(client, path).status_code == 201
    ModelVersion.objects.filter(number=1).update(status="failed", status_message="its sample did not fit")
    retried = upload(client, path)
    assert retried.status_code == 201, retried.json()
    assert retried.json()["number"] == 2


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("model.onnx", b"\x00" * 100, "unknown_format"),
        ("model.bin", np.random.default_rng(0).bytes(4096), "unknown_format"),
    ],
)
def test_a_bad_file_gets_a_422_and_leaves_nothing(dev, model, tmp_path, artifact_dir, name, content, code) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    before = AuditEvent.objects.count()
    response = upload(dev.token_client(), path)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert not ModelVersion.objects.exists()
    assert stored_files(artifact_dir) == []
    assert AuditEvent.objects.count() == before


def test_extension_and_content_mismatch_names_both(dev, model, tmp_path, artifact_dir) -> None:
    path = onnx_file(tmp_path / "iris.onnx")
    response = upload(dev.token_client(), path, name="iris.tflite")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "format_mismatch"
    assert "ONNX" in error["message"] and "iris.tflite" in error["message"]
    assert not ModelVersion.objects.exists() and stored_files(artifact_dir) == []


def test_a_sample_is_kept_and_checked_against_the_signature(dev, model, tmp_path, artifact_dir) -> None:
    path = onnx_file(tmp_path / "iris.onnx")
    good = tmp_path / "sample.json"
    good.write_text(json.dumps({"x": [[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]]}))
    client = dev.token_client()
    with good.open("rb") as sample:
        response = upload(client, path, sample=sample)
    assert response.status_code == 201, response.json()
    assert response.json()["sample_filename"] == "sample.json"
    assert response.json()["metadata"]["sample"] == {"x": [2, 4]}

    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((2, 5), dtype=np.float32))
    with bad.open("rb") as sample:
        response = upload(client, onnx_file(tmp_path / "other.onnx", seed=3), sample=sample)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "sample_mismatch"
    assert "[2, 5]" in response.json()["error"]["message"]
    assert ModelVersion.objects.count() == 1
    assert len(stored_files(artifact_dir)) == 2  # the first version's model and sample only


def test_oversized_upload_is_refused_with_413_and_nothing_stored(dev, model, tmp_path, artifact_dir, settings) -> None:
    settings.MODELDECK_MAX_UPLOAD_BYTES = 1024
    path = tmp_path / "big.onnx"
    path.write_bytes(b"\x08" + b"\x00" * 4096)
    response = upload(dev.token_client(), path)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert not ModelVersion.objects.exists() and stored_files(artifact_dir) == []


def test_viewer_cannot_upload_and_outsider_sees_nothing(make_member, dev, model, team_b, tmp_path) -> None:
    path = onnx_file(tmp_path / "iris.onnx")
    assert upload(dev.token_client(), path).status_code == 201
    viewer = make_member(team=model.team, role=Role.VIEWER)
    response = upload(viewer.token_client(), path)
    assert response.status_code == 403
    assert response.json()["error"]["detail"]["required_role"] == "developer"
    outsider = make_member(team=team_b, role=Role.ADMIN).token_client()
    for url in [
        "/api/v1/models/alpha/iris",
        "/api/v1/models/alpha/iris/versions",
        "/api/v1/models/alpha/iris/versions/1",
        "/api/v1/models/alpha/iris/versions/1/artifact",
    ]:
        response = outsider.get(url)
        assert response.status_code == 404, url
        assert response.json()["error"]["message"] == "Team 'alpha' not found."
    assert upload(outsider, path).status_code == 404
    assert outsider.post("/api/v1/models", {"team": "alpha", "name": "x"}, format="json").status_code == 404
    assert outsider.get("/api/v1/models").json() == []
    assert ModelVersion.objects.count() == 1 and RegisteredModel.objects.count() == 1


def test_model_create_validation(dev, model) -> None:
    client = dev.token_client()
    duplicate = client.post("/api/v1/models", {"team": "alpha", "name": "iris"}, format="json")
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "already_exists"
    bad = client.post("/api/v1/models", {"team": "alpha", "name": "Bad Name"}, format="json")
    assert bad.status_code == 400 and "name" in bad.json()["error"]["detail"]
    assert RegisteredModel.objects.count() == 1


def test_model_list_search_and_query_count(dev, model, django_assert_max_num_queries) -> None:
    client = dev.token_client()
    for name in ["fraud", "churn", "fraud-v2"]:
        client.post("/api/v1/models", {"team": "alpha", "name": name}, format="json")
    assert [m["name"] for m in client.get("/api/v1/models?search=fraud").json()] == ["fraud", "fraud-v2"]
    client.get("/api/v1/models")
    # token, team, role, models (with their version counts): no query per model
    with django_assert_max_num_queries(4):
        listed = client.get("/api/v1/models?team=alpha").json()
    assert [m["name"] for m in listed] == ["churn", "fraud", "fraud-v2", "iris"]
    for index in range(10):
        client.post("/api/v1/models", {"team": "alpha", "name": f"extra-{index}"}, format="json")
    with django_assert_max_num_queries(4):
        assert len(client.get("/api/v1/models?team=alpha").json()) == 14


def test_version_list_query_count_is_flat(dev, model, tmp_path, django_assert_max_num_queries) -> None:
    client = dev.token_client()
    upload(client, onnx_file(tmp_path / "a.onnx", seed=1))
    client.get("/api/v1/models/alpha/iris/versions")
    with django_assert_max_num_queries(8) as few:
        client.get("/api/v1/models/alpha/iris/versions")
    one_version = len(few.captured_queries)  # read now: each request clears the connection's query log
    assert one_version > 0
    for seed in range(2, 6):
        upload(client, onnx_file(tmp_path / f"{seed}.onnx", seed=seed))
    with django_assert_max_num_queries(one_version):
        assert len(client.get("/api/v1/models/alpha/iris/versions").json()) == 5


def test_pickle_is_refused_unless_the_team_trusts_it(make_member, dev, model, tmp_path, artifact_dir) -> None:
    from tests.registry.model_files import pickle_file

    path = pickle_file(tmp_path / "model.pkl")
    response = upload(dev.token_client(), path)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "pickle_refused" and "skops" in error["message"]
    assert stored_files(artifact_dir) == []

    admin = make_member(team=model.team, role=Role.ADMIN)
    assert dev.token_client().patch("/api/v1/teams/alpha", {"trusted_pickle": True}, format="json").status_code == 403
    enabled = admin.token_client().patch("/api/v1/teams/alpha", {"trusted_pickle": True}, format="json")
    assert enabled.status_code == 200 and enabled.json()["trusted_pickle"] is True
    assert AuditEvent.objects.filter(action="team.settings", data={"trusted_pickle": True}).exists()
    response = upload(dev.token_client(), path)
    assert response.status_code == 201
    assert response.json()["status"] == "processing"  # opened only by a worker


def test_worker_formats_are_processing_until_the_worker_inspects_them(
    dev, model, tmp_path, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    from tests.registry.model_files import keras_file

    queued: list[int] = []
    monkeypatch.setattr("registry.tasks.model_version_inspect_task.delay", queued.append)
    path = keras_file(tmp_path / "iris.keras")
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(dev.token_client(), path)
    assert response.status_code == 201
    assert response.json()["status"] == "processing" and response.json()["signature"] == {}
    version = ModelVersion.objects.get()
    assert queued == [version.pk]  # enqueued once the row is committed
    done = model_version_inspect(version_id=version.pk)
    assert done is not None and done.status == "ready"
    assert done.signature == {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "output_0", "datatype": "FP32", "shape": [-1, 3]}],
    }
    assert done.framework == "keras"
    # A second delivery of the task changes nothing.
    again = model_version_inspect(version_id=version.pk)
    assert again is not None
    assert again.updated_at == done.updated_at


def test_create_model_registers_a_missing_model_with_its_first_version_or_not_at_all(
    dev, make_member, team_b, tmp_path, artifact_dir
) -> None:
    url = "/api/v1/models/alpha/wine/versions?create_model=true"
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model" * 20)
    refused = upload(dev.token_client(), junk, url=url)
    assert refused.status_code == 422
    assert not RegisteredModel.objects.filter(name="wine").exists()  # a refused file registers nothing
    assert stored_files(artifact_dir) == []
    assert not AuditEvent.objects.filter(action="model.create").exists()

    path = onnx_file(tmp_path / "wine.onnx")
    # Without the flag a missing model is still a 404; viewers and other teams get what they always get.
    assert upload(dev.token_client(), path, url="/api/v1/models/alpha/wine/versions").status_code == 404
    viewer = make_member(team=dev.team, role=Role.VIEWER, username="viewer")
    assert upload(viewer.token_client(), path, url=url).status_code == 403
    outsider = make_member(team=team_b, role=Role.ADMIN, username="outsider")
    assert upload(outsider.token_client(), path, url=url).status_code == 404
    assert not RegisteredModel.objects.filter(name="wine").exists()

    created = upload(dev.token_client(), path, url=url)
    assert created.status_code == 201, created.json()
    assert (created.json()["model"], created.json()["number"]) == ("alpha/wine", 1)
    assert RegisteredModel.objects.get(name="wine").versions.count() == 1
    assert AuditEvent.objects.filter(action="model.create", data={"name": "wine"}).count() == 1
    # Once it exists the flag changes nothing: the next upload is v2 of the same model.
    assert upload(dev.token_client(), onnx_file(tmp_path / "w2.onnx", seed=2), url=url).json()["number"] == 2
