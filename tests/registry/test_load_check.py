"""A model that cannot run is never ready: every servable upload is loaded and warmed by its serving runtime in a
child process, under memory and time limits, before it becomes `ready`."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest

from registry.choices import VersionStatus
from registry.converters import _check_result
from registry.formats.base import ConversionError, ModelFileError, Recipe
from registry.formats.onnx import FORMAT as ONNX
from registry.load_check import runtime_load_check, without_paths
from registry.models import ModelVersion
from registry.tasks import model_version_inspect_task
from teams.choices import Role
from tests.registry import model_files
from tests.registry.conftest import stored_files

pytestmark = pytest.mark.django_db

UNKNOWN_OP = "com.example.tenant:Frobnicate(-1) is not a registered function/op"
# Where a message would show a server path: a slash that starts a word.
ABSOLUTE_PATH = re.compile(r"(?:^|[\s'\"(])/\w")


@pytest.fixture
def developer(make_member, team_a, monkeypatch):
    monkeypatch.setattr("registry.tasks.model_version_inspect_task.delay", lambda version_id: None)
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    member = make_member(team=team_a, role=Role.ADMIN)
    client = member.token_client()
    assert client.post("/api/v1/models", {"team": "alpha", "name": "m"}, format="json").status_code == 201
    return member


def _upload(member, path: Path, model: str = "m"):
    file = io.BytesIO(path.read_bytes())
    file.name = path.name
    url = f"/api/v1/models/alpha/{model}/versions?create_model=true"
    return member.token_client().post(url, {"file": file}, format="multipart")


def test_an_onnx_model_no_runtime_can_load_is_refused_in_the_request(developer, tmp_path, artifact_dir) -> None:
    path = model_files.onnx_with_unknown_op(tmp_path / "tenant.onnx")
    ONNX.inspect(path)  # the checker and the inspection accept it: only loading it tells

    response = _upload(developer, path)
    assert response.status_code == 422, response.json()
    error = response.json()["error"]
    assert error["code"] == "runtime_load_failed"
    assert error["message"].startswith("onnxruntime, which serves this model, cannot load and run it: ")
    assert UNKNOWN_OP in error["message"]
    assert str(tmp_path) not in error["message"] and not ABSOLUTE_PATH.search(error["message"])
    assert error["detail"] == {"runtime": "onnxruntime", "reason": "load"}
    assert not ModelVersion.objects.exists()
    assert stored_files(artifact_dir) == []


def test_a_large_model_no_runtime_can_load_fails_in_the_worker_is_deleted_and_never_deploys(
    developer, tmp_path, artifact_dir, settings
) -> None:
    settings.MODELDECK_INLINE_INSPECT_MAX_BYTES = 0  # as a file too large to inspect in the request
    response = _upload(developer, model_files.onnx_with_unknown_op(tmp_path / "tenant.onnx"))
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "processing"
    assert len(stored_files(artifact_dir)) == 1

    model_version_inspect_task(ModelVersion.objects.get().pk)
    version = ModelVersion.objects.get()
    assert version.status == VersionStatus.FAILED
    assert version.status_message.startswith("onnxruntime, which serves this model, cannot load and run it: ")
    assert UNKNOWN_OP in version.status_message and not ABSOLUTE_PATH.search(version.status_message)
    # A model the runtime refuses is a model problem, refused like a corrupt file: nothing can use it, so it goes.
    assert version.artifact_key == ""
    assert stored_files(artifact_dir) == []

    deploy = developer.token_client().post(
        "/api/v1/endpoints", {"name": "m-prod", "model": "alpha/m", "version": 1}, format="json"
    )
    assert deploy.status_code == 409, deploy.json()
    assert deploy.json()["error"]["code"] == "version_not_ready"


def test_a_model_needing_more_memory_than_the_limit_is_refused(developer, tmp_path, artifact_dir, settings) -> None:
    settings.MODELDECK_LOAD_CHECK_MEMORY_MB = 512
    response = _upload(developer, model_files.onnx_needing_memory(tmp_path / "hungry.onnx", megabytes=1200))
    assert response.status_code == 422, response.json()
    assert response.json()["error"] == {
        "code": "runtime_load_failed",
        "message": "onnxruntime, which serves this model, needs more than 512 MiB of memory to load and run it.",
        "detail": {"runtime": "onnxruntime", "reason": "memory", "memory_mb": 512},
    }
    assert not ModelVersion.objects.exists()


def test_a_load_past_the_time_limit_is_stopped(tmp_path, monkeypatch) -> None:
    path = model_files.onnx_file(tmp_path / "m.onnx")
    children: list[subprocess.Popen[bytes]] = []
    popen = subprocess.Popen

    def spy(*args, **kwargs):
        children.append(popen(*args, **kwargs))
        return children[-1]

    monkeypatch.setattr("registry.load_check.subprocess.Popen", spy)
    with pytest.raises(ModelFileError) as refused:
        runtime_load_check(format_name="onnx", path=path, signature=ONNX.inspect(path).signature, timeout=0.001)
    assert (
        refused.value.message == "onnxruntime, which serves this model, did not load and run it within 0.001 seconds."
    )
    assert refused.value.detail["reason"] == "timeout"
    assert [child.returncode for child in children] == [-9]  # killed and reaped, not left running


def test_bytes_that_passed_are_not_loaded_again_in_the_same_process(developer, tmp_path, monkeypatch) -> None:
    path = model_files.onnx_file(tmp_path / "m.onnx", seed=8_100_613)
    calls: list[object] = []
    popen = subprocess.Popen

    def spy(*args, **kwargs):
        calls.append(args)
        return popen(*args, **kwargs)

    monkeypatch.setattr("registry.load_check.subprocess.Popen", spy)
    # The same bytes as two models' versions (one model refuses a copy of its own version).
    assert [_upload(developer, path, model).json()["status"] for model in ("m", "m-copy")] == ["ready", "ready"]
    assert len(calls) == 1


def test_a_converted_model_its_runtime_cannot_load_fails_the_conversion(tmp_path) -> None:
    path = model_files.onnx_with_unknown_op(tmp_path / "model.onnx")
    with pytest.raises(ConversionError) as failed:
        _check_result(path, Recipe(target="onnx"), ONNX.inspect(path).signature)
    assert failed.value.code == "conversion_failed"
    assert failed.value.message.startswith(
        "The converted ONNX model does not load: onnxruntime, which serves this model, cannot load and run it: "
    )
    assert UNKNOWN_OP in failed.value.message and str(tmp_path) not in failed.value.message


def test_messages_keep_no_server_paths() -> None:
    model = Path("/var/lib/modeldeck/artifacts/ab/cd/model.onnx")
    assert without_paths(f"Load model from {model} failed: bad", model) == "Load model from the model file failed: bad"
    assert (
        without_paths("No such file or directory: '/var/lib/modeldeck/artifacts/ab/cd'.")
        == "No such file or directory: '…'."
    )
    assert without_paths("at /onnxruntime_src/core/bfc_arena.cc:360, size 8") == "at …:360, size 8"
    # Not paths: an op name with a slash, a URL.
    assert without_paths("function/op, see https://onnx.ai/a/b") == "function/op, see https://onnx.ai/a/b"
