"""The job lifecycle: one claim per job, every outcome a final status, cancel, and the reaper for dead workers."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from registry.choices import JobKind, JobStatus
from registry.formats.base import ModelFileError
from registry.models import Job, ModelVersion
from registry.services.jobs import MAX_ATTEMPTS, Heartbeat, job_create, job_progress, job_run, jobs_reap
from registry.services.versions import Upload, model_version_create, registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.registry.model_files import onnx_file
from tests.teams.factories import create_membership


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """Job ids handed to the broker (captured instead of sent)."""
    sent: list[int] = []
    monkeypatch.setattr("registry.tasks.job_run_task.delay", sent.append)
    return sent


@pytest.fixture
def version(db, tmp_path) -> ModelVersion:
    membership = create_membership(role=Role.DEVELOPER)
    actor = Actor(user=membership.user)
    model = registered_model_create(actor=actor, team=membership.team, name="m")
    path = onnx_file(tmp_path / "m.onnx")
    upload = Upload(path, "m.onnx", hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    return model_version_create(actor=actor, model=model, upload=upload)


@pytest.fixture
def actor(version) -> Actor:
    return Actor(user=version.created_by)


def make_job(actor, version, django_capture_on_commit_callbacks) -> Job:
    with django_capture_on_commit_callbacks(execute=True):
        return job_create(actor=actor, version=version, kind=JobKind.CONVERT, params={"target": "onnx"})


def test_an_identical_active_job_is_reused_and_enqueued_once(
    actor, version, queued, django_capture_on_commit_callbacks
):
    first = make_job(actor, version, django_capture_on_commit_callbacks)
    second = make_job(actor, version, django_capture_on_commit_callbacks)
    assert first.pk == second.pk
    assert queued == [first.pk]
    assert first.status == JobStatus.QUEUED and first.log[0]["message"].startswith("queued by")


def test_a_job_runs_once_even_if_delivered_twice(actor, version, queued, django_capture_on_commit_callbacks):
    job = make_job(actor, version, django_capture_on_commit_callbacks)
    calls = []

    def handler(job):
        calls.append(job.pk)
        job_progress(job, 50, "half way")
        return {"answer": 42}, None

    job_run(job.pk, "w1", {JobKind.CONVERT: handler})
    job_run(job.pk, "w2", {JobKind.CONVERT: handler})  # a redelivered message
    job.refresh_from_db()
    assert calls == [job.pk]
    assert job.status == JobStatus.SUCCEEDED and job.progress == 100 and job.result == {"answer": 42}
    assert job.worker == "w1" and job.attempts == 1 and job.finished_at is not None
    assert [entry["message"] for entry in job.log][-2:] == ["half way", "succeeded"]


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (ModelFileError("conversion_failed", "Op 'Foo' is not supported."), "Op 'Foo' is not supported."),
        (SoftTimeLimitExceeded(), "The job ran past its time limit and was stopped."),
        (RuntimeError("secret internals"), "The job failed unexpectedly; the error has been logged."),
    ],
)
def test_every_failure_becomes_a_failed_job_with_a_clear_reason(
    actor, version, queued, django_capture_on_commit_callbacks, exc, message
):
    job = make_job(actor, version, django_capture_on_commit_callbacks)

    def handler(job):
        raise exc

    job_run(job.pk, "w1", {JobKind.CONVERT: handler})
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == message
    assert "secret internals" not in str(job.log)


def test_cancel_a_queued_job_and_a_running_one(actor, version, queued, django_capture_on_commit_callbacks, client):
    from registry.services.jobs import job_cancel

    job = make_job(actor, version, django_capture_on_commit_callbacks)
    assert job_cancel(actor=actor, job=job).status == JobStatus.CANCELLED
    ran = []

    def record(job):
        ran.append(job)
        return {}, None

    job_run(job.pk, "w1", {JobKind.CONVERT: record})
    assert ran == []  # a cancelled job is never claimed

    job2 = job_create(actor=actor, version=version, kind=JobKind.CONVERT, params={"target": "tflite"})

    def handler(job):
        job_cancel(actor=actor, job=Job.objects.get(pk=job.pk))  # someone clicks Cancel meanwhile
        job_progress(job, 60, "next step")
        raise AssertionError("job_progress must stop a cancelled job")

    job_run(job2.pk, "w1", {JobKind.CONVERT: handler})
    job2.refresh_from_db()
    assert job2.status == JobStatus.CANCELLED
    from common.errors import ApplicationError

    with pytest.raises(ApplicationError, match="already ended"):
        job_cancel(actor=actor, job=job2)


def _run_until_claimed(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, attempts=job.attempts + 1, heartbeat_at=timezone.now()
    )


def test_the_reaper_requeues_a_job_whose_worker_died_then_gives_up(
    actor, version, queued, django_capture_on_commit_callbacks
):
    job = make_job(actor, version, django_capture_on_commit_callbacks)
    queued.clear()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        job.refresh_from_db()
        _run_until_claimed(job)  # a worker claims it ... and is SIGKILLed
        assert jobs_reap() == []  # a fresh heartbeat is left alone
        later = timezone.now() + timedelta(minutes=2)
        assert jobs_reap(now=later) == [job.pk]
        job.refresh_from_db()
        if attempt < MAX_ATTEMPTS:
            assert job.status == JobStatus.QUEUED
            assert queued[-1] == job.pk
        else:
            assert job.status == JobStatus.FAILED
            assert "stopped without finishing it 3 times" in job.error
    assert len(queued) == MAX_ATTEMPTS - 1


def test_the_reaper_finishes_a_cancel_whose_worker_died(actor, version, queued, django_capture_on_commit_callbacks):
    job = make_job(actor, version, django_capture_on_commit_callbacks)
    _run_until_claimed(job)
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    jobs_reap(now=timezone.now() + timedelta(minutes=2))
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_keeps_a_long_step_alive(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    membership = create_membership(role=Role.DEVELOPER)
    actor = Actor(user=membership.user)
    model = registered_model_create(actor=actor, team=membership.team, name="m")
    path = onnx_file(tmp_path / "m.onnx")
    upload = Upload(path, "m.onnx", hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    version = model_version_create(actor=actor, model=model, upload=upload)
    job = job_create(actor=actor, version=version, kind=JobKind.CONVERT, params={"target": "onnx"})
    old = timezone.now() - timedelta(minutes=5)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, heartbeat_at=old)
    with Heartbeat(Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING), every=0.1):
        time.sleep(0.5)
    job.refresh_from_db()
    assert job.heartbeat_at is not None
    assert job.heartbeat_at > old + timedelta(minutes=4)
    assert jobs_reap() == []


def test_jobs_api_is_team_scoped(make_member, actor, version, team_b, queued, django_capture_on_commit_callbacks):
    job = make_job(actor, version, django_capture_on_commit_callbacks)
    team = version.model.team
    member = make_member(team=team, role=Role.VIEWER).token_client()
    body = member.get(f"/api/v1/jobs/{job.pk}").json()
    assert body["status"] == "queued" and body["kind"] == "convert" and body["version"] == version.number
    assert [j["id"] for j in member.get("/api/v1/jobs").json() if j["kind"] == "convert"] == [job.pk]
    assert member.post(f"/api/v1/jobs/{job.pk}/cancel").status_code == 403  # viewers cannot cancel
    outsider = make_member(team=team_b, role=Role.ADMIN).token_client()
    assert outsider.get(f"/api/v1/jobs/{job.pk}").status_code == 404
    assert outsider.post(f"/api/v1/jobs/{job.pk}/cancel").status_code == 404
    assert outsider.get("/api/v1/jobs").json() == []
    developer = make_member(team=team, role=Role.DEVELOPER).token_client()
    assert developer.post(f"/api/v1/jobs/{job.pk}/cancel").json()["status"] == "cancelled"


def test_a_converter_failure_keeps_its_traceback_for_team_admins_only(
    actor, version, queued, django_capture_on_commit_callbacks
):
    job = make_job(actor, version, django_capture_on_commit_callbacks)

    def handler(job):
        try:
            raise TypeError("Field onnx.AttributeProto.ints: Expected an int, got a boolean.")
        except TypeError as exc:
            raise ModelFileError("conversion_failed", "The skl2onnx converter failed: Expected an int.") from exc

    job_run(job.pk, "w1", {JobKind.CONVERT: handler})
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == "The skl2onnx converter failed: Expected an int."
    assert job.trace.startswith("Traceback (most recent call last):")
    assert "TypeError: Field onnx.AttributeProto.ints: Expected an int, got a boolean." in job.trace
    assert "Traceback" not in str(job.log)

    developer = version.created_by  # a developer of the team sees the paragraph, not the traceback
    admin = create_membership(team=version.model.team, role=Role.ADMIN).user
    from rest_framework.test import APIClient

    for user, trace in ((developer, None), (admin, job.trace)):
        client = APIClient()
        client.force_authenticate(user)
        body = client.get(f"/api/v1/jobs/{job.pk}").json()
        assert body["error"] == job.error
        assert body["trace"] == trace
