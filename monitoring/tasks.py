from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from monitoring.services import metric_minutes_prune, worker_heartbeat_record


@shared_task(ignore_result=True, expires=30)
def worker_heartbeat() -> None:
    """Record that a worker picked up a task (beat sends this every few seconds)."""
    worker_heartbeat_record(worker=worker_heartbeat.request.hostname or "unknown")


@shared_task(ignore_result=True)
def metric_minutes_prune_task() -> None:
    """Drop inference history older than MODELDECK_METRICS_RETENTION_DAYS (beat, hourly)."""
    metric_minutes_prune(older_than=timedelta(days=settings.MODELDECK_METRICS_RETENTION_DAYS))
