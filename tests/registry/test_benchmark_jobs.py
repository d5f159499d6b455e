"""Benchmarks as jobs: servable versions are measured in a child process; numbers land on the version."""

from __future__ import annotations

import io

import pytest
from django.template.defaultfilters import floatformat
from django.test import Client

from registry.models import Job, ModelVersion
from registry.services.jobs import job_run
from registry.tasks import JOB_HANDLERS
from teams.choices import Role
from tests.registry import model_files

pytestmark = pytest.mark.django_db


def test_a_servable_upload_is_benchmarked_and_shown_side_by_side(
    make_member, team_a, tmp_path, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    queued: list[int] = []
    monkeypatch.setattr("registry.tasks.job_run_task.delay", queued.append)
    member = make_member(team=team_a, role=Role.DEVELOPER)
    client = member.token_client()
    client.post("/api/v1/models", {"team": "alpha", "name": "iris"}, format="json")
    file = io.BytesIO(model_files.onnx_file(tmp_path / "iris.onnx").read_bytes())
    file.name = "iris.onnx"
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/api/v1/models/alpha/iris/versions", {"file": file}, format="multipart").status_code == 201
    assert [Job.objects.get(pk=pk).kind for pk in queued] == ["benchmark"]
    job_run(queued.pop(), "test-worker", JOB_HANDLERS)
    version = ModelVersion.objects.get()
    result = version.benchmark
    assert [b["batch_size"] for b in result["batches"]] == [1, 8, 32]
    for batch in result["batches"]:
        assert 0 < batch["p50_ms"] <= batch["p95_ms"] <= batch["p99_ms"]
        assert batch["runs"] > 10 and batch["throughput_rows_per_s"] > 0
    assert result["load_ms"] > 0 and result["file_size"] == version.size
    assert result["memory"]["peak_rss_mib"] > result["memory"]["model_and_runs_mib"] >= 0
    assert Job.objects.get(kind="benchmark").result == result

    browser = Client()
    browser.force_login(member.user)
    page = browser.get("/teams/alpha/models/iris/").content.decode()
    # Rounded as the page rounds it (Django's floatformat rounds half up, Python's format does not).
    assert f"{floatformat(result['batches'][0]['p50_ms'], 3)} ms" in page
    assert 'data-testid="benchmark"' in browser.get("/teams/alpha/models/iris/versions/1/").content.decode()

    # One click runs it again.
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post("/api/v1/models/alpha/iris/versions/1/benchmarks")
    assert again.status_code == 202
    assert again.json()["kind"] == "benchmark"


def test_only_servable_ready_versions_are_benchmarked(make_member, team_a, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("registry.tasks.model_version_inspect_task.delay", lambda version_id: None)
    client = make_member(team=team_a, role=Role.DEVELOPER).token_client()
    client.post("/api/v1/models", {"team": "alpha", "name": "iris"}, format="json")
    file = io.BytesIO(model_files.keras_file(tmp_path / "iris.keras").read_bytes())
    file.name = "iris.keras"
    client.post("/api/v1/models/alpha/iris/versions", {"file": file}, format="multipart")
    early = client.post("/api/v1/models/alpha/iris/versions/1/benchmarks")
    assert early.status_code == 409
    ModelVersion.objects.update(status="ready")
    refused = client.post("/api/v1/models/alpha/iris/versions/1/benchmarks")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "not_servable"
    assert not Job.objects.exists()


def test_a_large_onnx_inspected_by_the_worker_is_benchmarked_once(
    make_member, team_a, tmp_path, monkeypatch, settings, django_capture_on_commit_callbacks
) -> None:
    from registry.tasks import model_version_inspect_task

    settings.MODELDECK_INLINE_INSPECT_MAX_BYTES = 10  # every file counts as large
    queued: list[int] = []
    monkeypatch.setattr("registry.tasks.job_run_task.delay", queued.append)
    monkeypatch.setattr("registry.tasks.model_version_inspect_task.delay", lambda version_id: None)
    client = make_member(team=team_a, role=Role.DEVELOPER).token_client()
    client.post("/api/v1/models", {"team": "alpha", "name": "iris"}, format="json")
    file = io.BytesIO(model_files.onnx_file(tmp_path / "iris.onnx").read_bytes())
    file.name = "iris.onnx"
    assert (
        client.post("/api/v1/models/alpha/iris/versions", {"file": file}, format="multipart").json()["status"]
        == "processing"
    )
    version = ModelVersion.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        model_version_inspect_task(version.pk)
        model_version_inspect_task(version.pk)  # a redelivered message
    assert [Job.objects.get(pk=pk).kind for pk in queued] == ["benchmark"]
