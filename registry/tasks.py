from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from registry.services import model_version_inspect
from registry.storage import artifact_orphans_delete

ORPHAN_MIN_AGE = timedelta(hours=1)


@shared_task(ignore_result=True, acks_late=True)
def model_version_inspect_task(version_id: int) -> None:
    """Inspect an uploaded version whose format needs TensorFlow or scikit-learn (idempotent)."""
    model_version_inspect(version_id=version_id)


@shared_task(ignore_result=True)
def artifact_orphans_delete_task() -> None:
    """Remove stored files that no version points to (beat runs this hourly)."""
    artifact_orphans_delete(older_than=ORPHAN_MIN_AGE)
