"""The job lifecycle: create, start, report progress, finish, cancel, and reap jobs whose worker died.

Every status change is a conditional UPDATE on the current status, so two workers (a redelivered message, a
retry racing the reaper) can never both run or finish the same job. The job row is the truth, the broker's
message only a nudge: a message that never reached the broker (it was away) or was lost with it is sent again
by the reaper, and a duplicate message finds the job no longer queued and does nothing.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from common.errors import ApplicationError
from common.events import team_event_publish
from common.registered_tasks import registered_task
from registry.choices import ACTIVE_JOB_STATUSES, JobStatus
from registry.models import Job, ModelVersion
from registry.signals import job_finished
from teams.choices import Action
from teams.permissions import Actor, actor_require
from teams.services import audit_record

logger = logging.getLogger(__name__)

# A running job's worker refreshes heartbeat_at this often; the reaper acts once it is JOB_LOST_AFTER old.
HEARTBEAT_SECONDS = 10
JOB_LOST_AFTER = timedelta(seconds=60)
# A job queued (or queued again) this long ago that no worker claimed is sent to the broker again.
JOB_UNCLAIMED_AFTER = timedelta(seconds=60)
MAX_ATTEMPTS = 3
LOG_LIMIT = 200
TRACE_LIMIT = 20_000
# The Celery task that runs a queued job (registry/tasks.py declares it under this name; sent by name, so this
# module never imports the tasks that call it).
JOB_RUN_TASK = "registry.tasks.job_run_task"


class JobCancelled(Exception):
    """Raised inside a running job when someone asked to cancel it."""


def job_create(*, actor: Actor | None, version: ModelVersion, kind: str, params: dict[str, Any]) -> Job:
    """Queue a job on a version (after commit); an identical job already queued or running is returned instead."""
    team = version.model.team
    if actor is not None:
        actor_require(actor=actor, team=team, action=Action.DEVELOP)
    with transaction.atomic():
        existing = Job.objects.filter(version=version, kind=kind, params=params, status__in=ACTIVE_JOB_STATUSES).first()
        if existing is not None:
            return existing
        job = Job.objects.create(
            team=team,
            kind=kind,
            version=version,
            params=params,
            created_by=actor.authenticated_user if actor is not None else None,
            log=[_log_entry(f"queued by {actor.authenticated_user.get_username() if actor else 'ModelDeck'}")],
        )
        if actor is not None:
            audit_record(
                team=team, actor=actor, action=f"job.{kind}", target=job, data={"version": version.number, **params}
            )
        job_enqueue_on_commit(job)
        # Pages following the team show a queued job at once, not when a worker takes it.
        transaction.on_commit(lambda: _publish(job))
    return job


def job_enqueue_on_commit(job: Job) -> None:
    job_id = job.pk
    transaction.on_commit(lambda: task_send(JOB_RUN_TASK, job_id))


def task_send(name: str, *args: Any) -> bool:
    """Send the task registered as `name` to the broker; when it is away, say so and return False (the reaper sends
    it again later).

    Used after commit: the row is written and is the truth, so a broker outage never fails the request that made it.
    """
    task = registered_task(name)  # outside the try: an unknown name is a bug, not a broker outage
    try:
        task.delay(*args)
    except Exception:
        logger.warning("%s%r not sent (broker away); the reaper sends it again", name, args, exc_info=True)
        return False
    return True


def _log_entry(message: str) -> dict[str, str]:
    return {"at": timezone.now().isoformat(), "message": message}


def _publish(job: Job) -> None:
    """Tell the team's live stream about the job; a missing channel layer never fails the job."""
    try:
        team_event_publish(team=job.team.slug, kind="job", data=job_event_data(job))
    except Exception:
        logger.warning("Could not publish job %s to the team stream", job.pk, exc_info=True)


def job_event_data(job: Job) -> dict[str, Any]:
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "progress": job.progress,
        "version": job.version.number,
        "model": job.version.model.name,
        "result_version": job.result_version.number if job.result_version else None,
        "error": job.error,
    }


def job_start(*, job_id: int, worker: str) -> Job | None:
    """Claim a queued job for this worker; None when it is not queued (done, cancelled or claimed elsewhere)."""
    now = timezone.now()
    # The attempt is counted in the claiming UPDATE itself, so a worker killed right after still uses one up.
    claimed = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING,
        worker=worker[:200],
        started_at=now,
        heartbeat_at=now,
        progress=0,
        error="",
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return None
    job = Job.objects.select_related("team", "version__model__team").get(pk=job_id)
    job.log = [*job.log, _log_entry(f"started on {worker} (attempt {job.attempts})")][-LOG_LIMIT:]
    Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, worker=worker[:200]).update(log=job.log)
    _publish(job)
    return job


def job_progress(job: Job, progress: int, message: str = "") -> None:
    """Record progress (and a log line); raise JobCancelled when a cancel was asked for meanwhile."""
    state = Job.objects.filter(pk=job.pk).values_list("status", "cancel_requested").first()
    if state is None or state[0] != JobStatus.RUNNING or state[1]:
        raise JobCancelled
    job.progress = max(0, min(100, progress))
    fields: dict[str, Any] = {"progress": job.progress, "heartbeat_at": timezone.now()}
    if message:
        job.log = [*job.log, _log_entry(message)][-LOG_LIMIT:]
        fields["log"] = job.log
    Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(**fields)
    _publish(job)


def job_finish(
    job: Job,
    status: str,
    *,
    error: str = "",
    result: dict[str, Any] | None = None,
    result_version: ModelVersion | None = None,
) -> bool:
    """Move a running job to its final status; False when it was no longer running (reaped or cancelled)."""
    job.status, job.error = status, error
    job.progress = 100 if status == JobStatus.SUCCEEDED else job.progress
    job.result = result if result is not None else job.result
    job.result_version = result_version
    message = {"succeeded": "succeeded", "cancelled": "cancelled"}.get(status, f"failed: {error}")
    job.log = [*job.log, _log_entry(message)][-LOG_LIMIT:]
    finished = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        status=status,
        error=error,
        progress=job.progress,
        result=job.result,
        result_version=result_version,
        log=job.log,
        finished_at=timezone.now(),
    )
    if finished:
        job_finished.send(sender=Job, kind=job.kind, status=status)
        _publish(job)
    return bool(finished)


def job_cancel(*, actor: Actor, job: Job) -> Job:
    """Cancel a queued job at once, or ask a running one to stop at its next progress point."""
    actor_require(actor=actor, team=job.team, action=Action.DEVELOP)
    now = timezone.now()
    if Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, finished_at=now, cancel_requested=True
    ):
        note = "cancelled before it started"
        job_finished.send(sender=Job, kind=job.kind, status=JobStatus.CANCELLED)
    elif Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(cancel_requested=True):
        note = "cancel requested; the worker stops at its next step"
    else:
        raise ApplicationError("not_cancellable", f"Job {job.pk} has already ended ({job.status}).", status=409)
    job.refresh_from_db()
    job.log = [*job.log, _log_entry(f"{note} by {actor.authenticated_user.get_username()}")][-LOG_LIMIT:]
    Job.objects.filter(pk=job.pk).update(log=job.log)
    audit_record(team=job.team, actor=actor, action="job.cancel", target=job, data={"kind": job.kind})
    _publish(job)
    return job


def jobs_reap(*, now: Any = None) -> list[int]:
    """Requeue (or fail, after MAX_ATTEMPTS) running jobs whose worker stopped sending heartbeats."""
    now = now or timezone.now()
    touched = []
    stale = Job.objects.filter(status=JobStatus.RUNNING).filter(
        Q(heartbeat_at__lt=now - JOB_LOST_AFTER) | Q(heartbeat_at__isnull=True)
    )
    for job in stale.select_related("team", "version__model"):
        if job.cancel_requested:
            update: dict[str, Any] = {"status": JobStatus.CANCELLED, "finished_at": now}
            note = "cancelled (its worker stopped)"
        elif job.attempts >= MAX_ATTEMPTS:
            reason = (
                f"The worker running this job stopped without finishing it {job.attempts} times "
                "(killed or out of memory); giving up."
            )
            update = {"status": JobStatus.FAILED, "finished_at": now, "error": reason}
            note = f"failed: {reason}"
        else:
            # updated_at starts the unclaimed clock: .update() does not set it by itself.
            update = {"status": JobStatus.QUEUED, "worker": "", "heartbeat_at": None, "updated_at": now}
            note = f"worker {job.worker or '?'} stopped sending heartbeats (attempt {job.attempts}); queued again"
        log = [*job.log, {"at": now.isoformat(), "message": note}][-LOG_LIMIT:]
        # Conditional on the heartbeat we judged stale: a worker that just reported in keeps its job.
        if Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, heartbeat_at=job.heartbeat_at).update(
            **update, log=log
        ):
            touched.append(job.pk)
            job.refresh_from_db()
            if job.status != JobStatus.QUEUED:
                job_finished.send(sender=Job, kind=job.kind, status=job.status)
            if job.status == JobStatus.QUEUED:
                task_send(JOB_RUN_TASK, job.pk)
            _publish(job)
    return touched


def jobs_resend_unclaimed(*, now: Any = None) -> list[int]:
    """Send queued jobs that no worker claimed within JOB_UNCLAIMED_AFTER to the broker again.

    Their message may never have got there (the broker was away at enqueue) or been lost with it; a duplicate
    finds the job claimed and does nothing.
    """
    now = now or timezone.now()
    sent = []
    unclaimed = Job.objects.filter(status=JobStatus.QUEUED, updated_at__lt=now - JOB_UNCLAIMED_AFTER)
    for job in unclaimed.only("pk", "updated_at", "log"):
        log = [*job.log, {"at": now.isoformat(), "message": "no worker took it yet; sent to the queue again"}]
        # Conditional on what we read: a job claimed or cancelled meanwhile is left alone.
        if Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED, updated_at=job.updated_at).update(
            updated_at=now, log=log[-LOG_LIMIT:]
        ) and task_send(JOB_RUN_TASK, job.pk):
            sent.append(job.pk)
    return sent


class Heartbeat:
    """Refresh a timestamp of some rows from a background thread while long steps run (converters, TF)."""

    def __init__(self, rows: QuerySet[Any], field: str = "heartbeat_at", every: float = HEARTBEAT_SECONDS) -> None:
        self.rows = rows
        self.field = field
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{rows.model.__name__}-heartbeat", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every):
                self.rows.update(**{self.field: timezone.now()})
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# What a job handler returns: its result (stored on the job) and the version it produced, if any.
JobOutcome = tuple[dict[str, Any], ModelVersion | None]
JobHandler = Callable[[Job], JobOutcome]


def job_run(job_id: int, worker: str, handlers: dict[str, JobHandler]) -> None:
    """Claim and run a job with the handler for its kind, turning every outcome into a final status."""
    from celery.exceptions import SoftTimeLimitExceeded

    from registry.formats.base import ModelFileError

    job = job_start(job_id=job_id, worker=worker)
    if job is None:
        return
    try:
        with Heartbeat(Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING)):
            result, produced = handlers[job.kind](job)
        job_finish(job, JobStatus.SUCCEEDED, result=result, result_version=produced)
    except JobCancelled:
        Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(cancel_requested=True)
        job_finish(job, JobStatus.CANCELLED)
    except SoftTimeLimitExceeded:
        job_finish(job, JobStatus.FAILED, error="The job ran past its time limit and was stopped.")
    except ModelFileError as exc:
        trace = ""
        if exc.__cause__ is not None:
            # The message is the root cause in a paragraph; admins debugging a converter want the whole story.
            trace = "".join(traceback.format_exception(exc))[-TRACE_LIMIT:]
            Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(trace=trace)
        job_finish(job, JobStatus.FAILED, error=exc.message)
    except Exception:
        logger.exception("Job %s failed", job.pk)
        job_finish(job, JobStatus.FAILED, error="The job failed unexpectedly; the error has been logged.")
