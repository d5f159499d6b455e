"""Hostile model files: refused in the request when the request can tell, deleted when only the worker can."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from registry.choices import VersionStatus
from registry.models import ModelVersion
from registry.tasks import model_version_inspect_task
from teams.choices import Role
from tests.registry import model_files
from tests.registry.conftest import stored_files

pytestmark = pytest.mark.django_db


@pytest.fixture
def developer(make_member, team_a, monkeypatch):
    monkeypatch.setattr("registry.tasks.model_version_inspect_task.delay", lambda version_id: None)
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    member = make_member(team=team_a, role=Role.DEVELOPER)
    client = member.token_client()
    assert client.post("/api/v1/models", {"team": "alpha", "name": "m"}, format="json").status_code == 201
    return member


def _upload(member, path: Path, name: str):
    file = io.BytesIO(path.read_bytes())
    file.name = name
    return member.token_client().post("/api/v1/models/alpha/m/versions", {"file": file}, format="multipart")


@pytest.mark.parametrize(
    ("module", "name"), [("os", "system"), ("builtins", "eval"), ("subprocess", "run"), ("sklearn.io", "x")]
)
def test_a_skops_file_naming_code_is_refused_in_the_request(developer, tmp_path, artifact_dir, module, name) -> None:
    path = model_files.skops_calling(tmp_path / "evil.skops", module, name, "touch pwned")
    response = _upload(developer, path, "evil.skops")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "skops_untrusted_types"
    assert error["detail"] == {"types": [f"{module}.{name}"]}
    assert not ModelVersion.objects.exists()
    assert stored_files(artifact_dir) == []


def test_a_keras_archive_with_a_python_lambda_is_refused_in_the_request(developer, tmp_path, artifact_dir) -> None:
    path = model_files.keras_lambda_file(tmp_path / "lambda.keras")
    response = _upload(developer, path, "lambda.keras")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unsafe_keras_model"
    assert "Lambda layer" in response.json()["error"]["message"]
    assert not ModelVersion.objects.exists()
    assert stored_files(artifact_dir) == []


@pytest.mark.parametrize("kind", ["h5-lambda", "skops-function"])
def test_what_only_the_worker_can_judge_is_deleted_when_it_refuses_it(
    developer, tmp_path, artifact_dir, make_member, team_a, kind
) -> None:
    if kind == "h5-lambda":  # HDF5 configs are read by the worker only
        path, name, code = model_files.keras_lambda_file(tmp_path / "lambda.h5", h5=True), "lambda.h5", "lambda layer"
    else:  # numpy.load passes the name check in the request; the worker sees it is a function, not a class
        path, name, code = model_files.skops_calling(tmp_path / "f.skops", "numpy", "load", "x"), "f.skops", "numpy"
    response = _upload(developer, path, name)
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "processing"
    assert len(stored_files(artifact_dir)) == 1

    model_version_inspect_task(ModelVersion.objects.get().pk)  # the worker's inspection refuses it
    version = ModelVersion.objects.get()
    assert version.status == VersionStatus.FAILED
    assert code in version.status_message.lower()
    assert version.artifact_key == ""
    assert stored_files(artifact_dir) == []
    download = developer.token_client().get("/api/v1/models/alpha/m/versions/1/artifact")
    assert download.status_code == 410
    assert download.json()["error"]["code"] == "file_deleted"
    assert download.json()["error"]["message"].startswith(f"v1 was refused ({version.status_message})")
    page = developer.session_client().get("/teams/alpha/models/m/versions/1/").content.decode()
    assert 'data-testid="file-deleted"' in page
    assert "Download " not in page
