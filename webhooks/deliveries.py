"""A delivery's life: recorded with the event, sent by a Celery task, retried with backoff, swept when its task was
lost, pruned after DELIVERY_RETENTION.

The row is the truth and the broker's message only a nudge (as with registry jobs): an attempt first claims the row
with a conditional UPDATE that pushes `next_attempt_at` past the attempt's own length, so a duplicate message (a
redelivery, the sweep racing a slow worker) finds it not due and does nothing, and a worker that dies mid-attempt
leaves a row the sweep sends again once the claim has run out. Receivers therefore see each delivery at least once
and deduplicate on its id (X-ModelDeck-Delivery).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from common.registered_tasks import registered_task
from teams.models import Team
from webhooks.choices import EVENT_KINDS, DeliveryState
from webhooks.models import Webhook, WebhookDelivery
from webhooks.payloads import delivery_body, delivery_headers, event_envelope
from webhooks.secrets import SecretUnreadable, webhook_secret_decrypt
from webhooks.transport import TOTAL_TIMEOUT, Outcome, delivery_post

logger = logging.getLogger(__name__)

# The wait after each failed attempt; after the last, the delivery has failed (six attempts in all).
BACKOFF: tuple[timedelta, ...] = (
    timedelta(seconds=10),
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(hours=1),
)
MAX_ATTEMPTS = len(BACKOFF) + 1
# An attempt holds its row this long (well past the POST's own limit): a duplicate task meanwhile does nothing.
CLAIM = timedelta(seconds=TOTAL_TIMEOUT * 6)
# A pending delivery due this long ago was not picked up: its task was lost (or never reached the broker).
SWEEP_GRACE = timedelta(seconds=30)
SWEEP_BATCH = 500
DELIVERY_RETENTION = timedelta(days=30)
LOG_LIMIT = MAX_ATTEMPTS * 2
# The Celery task that makes a delivery's next attempt (webhooks/tasks.py declares it under this name; sent by name,
# so this module never imports the tasks that call it).
DELIVERY_TASK = "webhooks.tasks.webhook_delivery_task"


def delivery_task_send(delivery_id: Any, *, countdown: float | None = None) -> bool:
    """Send the delivery's task to the broker; when it is away, log and return False (the sweep sends it later)."""
    task = registered_task(DELIVERY_TASK)  # outside the try: an unknown name is a bug, not a broker outage
    try:
        task.apply_async((str(delivery_id),), countdown=countdown)
    except Exception:
        logger.warning(
            "webhook delivery %s not sent to the broker (away); the sweep sends it", delivery_id, exc_info=True
        )
        return False
    return True


def deliveries_send_on_commit(deliveries: list[WebhookDelivery]) -> None:
    ids = [delivery.pk for delivery in deliveries]
    transaction.on_commit(lambda: [delivery_task_send(pk) for pk in ids])


def deliveries_create(
    *, team: Team | str, webhooks: list[Webhook], kind: str, data: dict[str, Any], event_id: uuid.UUID | None = None
) -> list[WebhookDelivery]:
    """Record one pending delivery of the event per webhook, and send their tasks once the transaction commits."""
    if not webhooks:
        return []
    now = timezone.now()
    event_id = event_id or uuid.uuid4()
    slug = team if isinstance(team, str) else team.slug
    payload = event_envelope(event_id=str(event_id), kind=kind, team=slug, created_at=now, data=data)
    deliveries = [
        WebhookDelivery(webhook=webhook, event_id=event_id, kind=kind, payload=payload, next_attempt_at=now)
        for webhook in webhooks
    ]
    # A savepoint: inside a publisher's transaction, a failed insert must not break the change it announces.
    with transaction.atomic():
        WebhookDelivery.objects.bulk_create(deliveries)
    deliveries_send_on_commit(deliveries)
    return deliveries


def deliveries_record_for_event(*, team: str, kind: str, data: dict[str, Any], **_: Any) -> list[WebhookDelivery]:
    """Receive common.events' `team_event_published`: a delivery for each enabled webhook subscribed to the kind.

    Written in the publisher's transaction when there is one (the row commits or rolls back with the change); the
    tasks go to the broker after the commit.
    """
    if kind not in EVENT_KINDS:
        return []
    # Filtered here, not with a JSON `contains` lookup: the embedded SQLite has none, and a team has few webhooks.
    webhooks = [hook for hook in Webhook.objects.filter(team__slug=team, enabled=True) if kind in hook.events]
    return deliveries_create(team=team, webhooks=webhooks, kind=kind, data=data)


def _claim(delivery_id: Any, now: datetime) -> bool:
    due = WebhookDelivery.objects.filter(pk=delivery_id, state=DeliveryState.PENDING, next_attempt_at__lte=now)
    return due.update(next_attempt_at=now + CLAIM, updated_at=now) == 1


def _attempt(delivery: WebhookDelivery, now: datetime) -> Outcome:
    webhook = delivery.webhook
    if not webhook.enabled:
        return Outcome(None, "The webhook is disabled.", 0)
    try:
        secret = webhook_secret_decrypt(webhook.secret_encrypted)
    except SecretUnreadable as exc:
        return Outcome(None, str(exc), 0)
    body = delivery_body(payload=delivery.payload, format=webhook.format, webhook_name=webhook.name)
    headers = delivery_headers(
        kind=delivery.kind, delivery_id=str(delivery.pk), secret=secret, timestamp=int(now.timestamp()), body=body
    )
    return delivery_post(url=webhook.url, body=body, headers=headers)


def delivery_attempt(*, delivery_id: Any, now: datetime | None = None) -> WebhookDelivery | None:
    """Make the delivery's next attempt if it is due and nobody else is making it; None when it was not due.

    Success is a 2xx; after a failure the next attempt waits BACKOFF[attempt], and the last one failing fails it.
    """
    now = now or timezone.now()
    if not _claim(delivery_id, now):
        return None
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
    claimed_until = delivery.next_attempt_at
    outcome = _attempt(delivery, now)
    attempts = delivery.attempts + 1
    fields: dict[str, Any] = {
        "attempts": attempts,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
        "response_ms": outcome.ms,
        "log": [
            *delivery.log,
            {"at": now.isoformat(), "status_code": outcome.status_code, "error": outcome.error, "ms": outcome.ms},
        ][-LOG_LIMIT:],
        "updated_at": timezone.now(),
    }
    disabled = not delivery.webhook.enabled
    if outcome.ok:
        fields.update(state=DeliveryState.SUCCEEDED, next_attempt_at=None)
    elif attempts >= MAX_ATTEMPTS or disabled:
        fields.update(state=DeliveryState.FAILED, next_attempt_at=None)
    else:
        fields.update(next_attempt_at=now + BACKOFF[attempts - 1])
    # Conditional on the claim still being ours: a claim that ran out was taken over by another attempt.
    if not WebhookDelivery.objects.filter(pk=delivery.pk, next_attempt_at=claimed_until).update(**fields):
        return None
    delivery.refresh_from_db()
    if delivery.state == DeliveryState.PENDING:
        delivery_task_send(delivery.pk, countdown=BACKOFF[attempts - 1].total_seconds())
    return delivery


def deliveries_resend_due(*, now: datetime | None = None) -> list[Any]:
    """Send again the tasks of pending deliveries due more than SWEEP_GRACE ago: their message was lost, or never
    reached the broker (it was away when the event fired). A duplicate finds the row claimed and does nothing."""
    now = now or timezone.now()
    due = WebhookDelivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=now - SWEEP_GRACE)
    ids = list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:SWEEP_BATCH])
    return [pk for pk in ids if delivery_task_send(pk)]


def deliveries_prune(*, now: datetime | None = None) -> int:
    """Delete deliveries older than DELIVERY_RETENTION."""
    now = now or timezone.now()
    deleted, _ = WebhookDelivery.objects.filter(created_at__lt=now - DELIVERY_RETENTION).delete()
    return deleted
