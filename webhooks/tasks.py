from __future__ import annotations

from celery import shared_task

from webhooks.deliveries import DELIVERY_TASK, deliveries_prune, deliveries_resend_due, delivery_attempt


# acks_late: a delivery whose worker is killed is delivered again; the attempt's conditional claim makes that safe.
# Named explicitly: deliveries send it by name (common/registered_tasks.py), never importing this module.
@shared_task(name=DELIVERY_TASK, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def webhook_delivery_task(delivery_id: str) -> None:
    """Make a webhook delivery's next attempt, if it is due."""
    delivery_attempt(delivery_id=delivery_id)


@shared_task(ignore_result=True)
def webhook_deliveries_sweep_task() -> None:
    """Send again deliveries whose task was lost (beat runs this every 30 s)."""
    deliveries_resend_due()


@shared_task(ignore_result=True)
def webhook_deliveries_prune_task() -> None:
    """Delete deliveries older than 30 days (beat runs this hourly)."""
    deliveries_prune()
