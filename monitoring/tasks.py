from __future__ import annotations

from celery import shared_task

from monitoring.services import worker_heartbeat_record


@shared_task(ignore_result=True, expires=30)
def worker_heartbeat() -> None:
    """Record that a worker picked up a task (beat sends this every few seconds)."""
    worker_heartbeat_record(worker=worker_heartbeat.request.hostname or "unknown")
