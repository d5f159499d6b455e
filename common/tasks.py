from __future__ import annotations

from celery import shared_task

from common.idempotency import idempotency_keys_prune


@shared_task(ignore_result=True)
def idempotency_keys_prune_task() -> None:
    """Forget Idempotency-Keys past their lifetime (beat runs this hourly)."""
    idempotency_keys_prune()
