from __future__ import annotations

from celery import shared_task

from registry.services import model_version_inspect


@shared_task(ignore_result=True, acks_late=True)
def model_version_inspect_task(version_id: int) -> None:
    """Inspect an uploaded version whose format needs TensorFlow or scikit-learn (idempotent)."""
    model_version_inspect(version_id=version_id)
