"""What the reaper does for work whose message never reached the broker: queued jobs and processing versions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from registry.choices import JobKind, JobStatus, VersionStatus
from registry.models import Job, ModelVersion
from registry.services.jobs import JOB_UNCLAIMED_AFTER, job_create, jobs_resend_unclaimed
from registry.services.versions import (
    INSPECTION_GIVE_UP_AFTER,
    INSPECTION_LOST_AFTER,
    model_version_inspect,
    versions_inspect_resend,
)
from teams.permissions import Actor
from tests.registry.test_jobs import version  # noqa: F401  (the fixture)


class BrokerAway(Exception):
    """What sending a task raises while the broker cannot be reached."""


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, int]]:
    messages: list[tuple[str, int]] = []
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda pk: messages.append(("job", pk)))
    monkeypatch.setattr("registry.tasks.model_version_inspect_task.delay", lambda pk: messages.append(("inspect", pk)))
    return messages


def test_a_job_created_while_the_broker_is_away_is_answered_and_sent_again_by_the_reaper(
    version,  # noqa: F811
    sent,
    monkeypatch,
    django_capture_on_commit_callbacks,
) -> None:
    def away(pk: int) -> None:
        raise BrokerAway

    Job.objects.all().delete()  # the upload's automatic benchmark
    monkeypatch.setattr("registry.tasks.job_run_task.delay", away)
    with django_capture_on_commit_callbacks(execute=True):  # before: the exception left the request as a 500
        job = job_create(actor=Actor(user=version.created_by), version=version, kind=JobKind.CONVERT, params={})
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda pk: sent.append(("job", pk)))
    assert jobs_resend_unclaimed() == []  # too young: a worker may be about to claim it
    later = timezone.now() + JOB_UNCLAIMED_AFTER + timedelta(seconds=1)
    assert jobs_resend_unclaimed(now=later) == [job.pk]
    assert jobs_resend_unclaimed(now=later) == []  # once per interval, not once per reaper run
    assert sent == [("job", job.pk)]
    job.refresh_from_db()
    assert (job.status, job.attempts, job.updated_at) == (JobStatus.QUEUED, 0, later)
    # A running or finished job is not the reaper's to send.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    assert jobs_resend_unclaimed(now=later + JOB_UNCLAIMED_AFTER * 2) == []


def test_a_version_stuck_processing_is_inspected_again_then_given_up(
    version,  # noqa: F811
    sent,
) -> None:
    ModelVersion.objects.filter(pk=version.pk).update(status=VersionStatus.PROCESSING, signature={})
    assert versions_inspect_resend() == []
    later = timezone.now() + INSPECTION_LOST_AFTER + timedelta(seconds=1)
    assert versions_inspect_resend(now=later) == [version.pk]
    assert versions_inspect_resend(now=later) == []
    assert sent == [("inspect", version.pk)]

    # An inspection that starts marks the version alive: the reaper leaves it to finish.
    done = model_version_inspect(version_id=version.pk)
    assert done is not None and done.status == VersionStatus.READY

    ModelVersion.objects.filter(pk=version.pk).update(status=VersionStatus.PROCESSING)
    much_later = timezone.now() + INSPECTION_GIVE_UP_AFTER + timedelta(seconds=1)
    assert versions_inspect_resend(now=much_later) == []
    version.refresh_from_db()
    assert version.status == VersionStatus.FAILED
    assert version.status_message.startswith("Its inspection never finished")
