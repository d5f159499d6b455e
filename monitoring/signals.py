"""Record a heartbeat the moment a worker is ready, so health reflects a new worker without waiting for beat."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready

from monitoring.services import worker_heartbeat_record


@worker_ready.connect
def _heartbeat_on_ready(sender: Any = None, **kwargs: Any) -> None:
    worker_heartbeat_record(worker=getattr(sender, "hostname", None) or "unknown")
