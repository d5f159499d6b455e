"""Writes of the monitoring app."""

from __future__ import annotations

from django.utils import timezone

from monitoring.models import WorkerHeartbeat


def worker_heartbeat_record(*, worker: str) -> WorkerHeartbeat:
    """Note that a worker is alive now."""
    heartbeat, _ = WorkerHeartbeat.objects.update_or_create(worker=worker, defaults={"last_seen": timezone.now()})
    return heartbeat
