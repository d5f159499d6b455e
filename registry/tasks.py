from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from registry.choices import JobKind, VersionStatus
from registry.services.archive import artifacts_collect
from registry.services.benchmarks import auto_benchmark, benchmark_job_run
from registry.services.conversions import auto_conversions_enqueue, conversion_job_run
from registry.services.jobs import JOB_RUN_TASK, JobHandler, job_run, jobs_reap, jobs_resend_unclaimed
from registry.services.versions import INSPECT_TASK, model_version_inspect, versions_inspect_resend
from registry.storage import artifact_orphans_delete

ORPHAN_MIN_AGE = timedelta(hours=1)
JOB_HANDLERS: dict[str, JobHandler] = {JobKind.CONVERT: conversion_job_run, JobKind.BENCHMARK: benchmark_job_run}


# Named explicitly: the services send these two by name (common/registered_tasks.py), never importing this module.
@shared_task(name=INSPECT_TASK, ignore_result=True, acks_late=True)
def model_version_inspect_task(version_id: int) -> None:
    """Inspect an uploaded version in the worker, then queue its conversions (or, if servable, its benchmark)."""
    version = model_version_inspect(version_id=version_id)
    if version is not None and version.status == VersionStatus.READY:
        auto_conversions_enqueue(version)
        auto_benchmark(version)


# acks_late: a job whose worker is killed is delivered again; job_run's conditional claim makes that safe.
@shared_task(name=JOB_RUN_TASK, bind=True, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def job_run_task(self, job_id: int) -> None:  # type: ignore[no-untyped-def]
    """Run a queued job (conversion, benchmark)."""
    job_run(job_id, worker=self.request.hostname or "worker", handlers=JOB_HANDLERS)


@shared_task(ignore_result=True)
def jobs_reap_task() -> None:
    """Requeue or fail jobs whose worker died; send again what no worker took (beat runs this every 30 s)."""
    jobs_reap()
    jobs_resend_unclaimed()
    versions_inspect_resend()


@shared_task(ignore_result=True)
def artifact_orphans_delete_task() -> None:
    """Remove stored files that no version points to (beat runs this hourly)."""
    artifact_orphans_delete(older_than=ORPHAN_MIN_AGE)


@shared_task(ignore_result=True)
def artifacts_collect_task() -> None:
    """Delete the files of versions archived past the retention that no release keeps (beat runs this hourly)."""
    artifacts_collect()
