"""Reads of the monitoring app."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from monitoring.models import WorkerHeartbeat


def worker_status() -> dict[str, Any]:
    """Summarise the freshest worker heartbeat: ok, stale, or unknown when no worker ever reported."""
    latest = WorkerHeartbeat.objects.order_by("-last_seen").first()
    if latest is None:
        return {"status": "unknown", "detail": "No worker has reported yet."}
    age = timezone.now() - latest.last_seen
    fresh = age <= timedelta(seconds=settings.MODELDECK_WORKER_STALE_SECONDS)
    return {
        "status": "ok" if fresh else "stale",
        "worker": latest.worker,
        "last_seen": latest.last_seen.isoformat(),
        "age_seconds": round(age.total_seconds(), 1),
    }
