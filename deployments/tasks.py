from __future__ import annotations

from celery import shared_task

from deployments.approvals import change_requests_expire


@shared_task(ignore_result=True)
def change_requests_expire_task() -> None:
    """Expire change requests past MODELDECK_APPROVAL_TTL_HOURS and abort their waiting rollouts (beat, each minute)."""
    change_requests_expire()
