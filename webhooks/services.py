"""Manage a team's webhooks (admins only, each change audited), send a test, redeliver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from common.errors import ApplicationError
from teams.choices import Action
from teams.models import Team
from teams.permissions import Actor, actor_require
from teams.services import audit_record
from webhooks.addresses import webhook_url_check
from webhooks.choices import EVENT_KINDS, PING, WebhookFormat
from webhooks.deliveries import deliveries_create, deliveries_send_on_commit
from webhooks.models import Webhook, WebhookDelivery
from webhooks.secrets import webhook_secret_encrypt, webhook_secret_generate


@dataclass(frozen=True)
class CreatedWebhook:
    """A new webhook and its signing secret, which is shown once (the server keeps it encrypted)."""

    webhook: Webhook
    secret: str


def _name_check(name: str) -> str:
    name = name.strip()
    if not name:
        raise ApplicationError("invalid", "Give the webhook a name, e.g. 'slack-releases'.", {"name": ["Required."]})
    if len(name) > 100:
        raise ApplicationError("invalid", "The name is longer than 100 characters.", {"name": ["Too long."]})
    return name


def _events_check(events: Any) -> list[str]:
    if not isinstance(events, list) or not all(isinstance(kind, str) for kind in events):
        raise ApplicationError("invalid", "`events` is a list of event kinds.", {"events": ["Expected a list."]})
    unknown = sorted(set(events) - set(EVENT_KINDS))
    if unknown:
        raise ApplicationError(
            "invalid",
            f"Unknown event kinds {unknown}; use any of {list(EVENT_KINDS)}.",
            {"events": [f"Unknown: {', '.join(unknown)}."]},
        )
    if not events:
        raise ApplicationError("invalid", "Choose at least one event kind to send.", {"events": ["Required."]})
    return [kind for kind in EVENT_KINDS if kind in events]


def _format_check(format: str) -> str:
    if format not in WebhookFormat.values:
        raise ApplicationError(
            "invalid",
            f"Unknown format '{format}'; use one of {', '.join(WebhookFormat.values)}.",
            {"format": [f"Unknown: {format}."]},
        )
    return format


def _audit_data(webhook: Webhook) -> dict[str, Any]:
    return {
        "name": webhook.name,
        "url": webhook.url,
        "events": webhook.events,
        "format": webhook.format,
        "enabled": webhook.enabled,
    }


def _name_taken(team: Team, name: str) -> ApplicationError:
    return ApplicationError(
        "already_exists", f"Team '{team.slug}' has a webhook named '{name}' already.", {"name": ["Taken."]}, status=409
    )


def webhook_create(
    *,
    actor: Actor,
    team: Team,
    name: str,
    url: str,
    events: list[str],
    format: str = WebhookFormat.MODELDECK,
    enabled: bool = True,
) -> CreatedWebhook:
    """Create a webhook with a fresh signing secret, returned here once."""
    actor_require(actor=actor, team=team, action=Action.MANAGE)
    name = _name_check(name)
    url = webhook_url_check(url)
    events = _events_check(events)
    format = _format_check(format)
    secret = webhook_secret_generate()
    webhook = Webhook(
        team=team,
        name=name,
        url=url,
        events=events,
        format=format,
        enabled=enabled,
        secret_encrypted=webhook_secret_encrypt(secret),
        created_by=actor.authenticated_user,
    )
    try:
        with transaction.atomic():
            webhook.save()
            audit_record(team=team, actor=actor, action="webhook.create", target=webhook, data=_audit_data(webhook))
    except IntegrityError as exc:
        raise _name_taken(team, name) from exc
    return CreatedWebhook(webhook=webhook, secret=secret)


def webhook_update(
    *,
    actor: Actor,
    webhook: Webhook,
    name: str | None = None,
    url: str | None = None,
    events: list[str] | None = None,
    format: str | None = None,
    enabled: bool | None = None,
) -> Webhook:
    """Change a webhook's name, URL, events, format or enabled state; the secret stays."""
    team = webhook.team
    actor_require(actor=actor, team=team, action=Action.MANAGE)
    wanted: dict[str, Any] = {}
    if name is not None:
        wanted["name"] = _name_check(name)
    if url is not None:
        wanted["url"] = webhook_url_check(url)
    if events is not None:
        wanted["events"] = _events_check(events)
    if format is not None:
        wanted["format"] = _format_check(format)
    if enabled is not None:
        wanted["enabled"] = enabled
    changes = {field: value for field, value in wanted.items() if getattr(webhook, field) != value}
    if not changes:
        return webhook
    try:
        with transaction.atomic():
            previous = {field: getattr(webhook, field) for field in changes}
            for field, value in changes.items():
                setattr(webhook, field, value)
            webhook.save(update_fields=[*changes, "updated_at"])
            audit_record(
                team=team,
                actor=actor,
                action="webhook.change",
                target=webhook,
                data={"name": webhook.name, "changes": changes, "previous": previous},
            )
    except IntegrityError as exc:
        webhook.refresh_from_db()
        raise _name_taken(team, changes["name"]) from exc
    return webhook


def webhook_delete(*, actor: Actor, webhook: Webhook) -> None:
    """Delete a webhook and its delivery log."""
    team = webhook.team
    actor_require(actor=actor, team=team, action=Action.MANAGE)
    with transaction.atomic():
        audit_record(team=team, actor=actor, action="webhook.delete", target=webhook, data=_audit_data(webhook))
        webhook.delete()


def _require_enabled(webhook: Webhook) -> None:
    if not webhook.enabled:
        raise ApplicationError(
            "webhook_disabled", f"The webhook '{webhook.name}' is disabled: enable it first.", status=409
        )


def webhook_ping(*, actor: Actor, webhook: Webhook) -> WebhookDelivery:
    """Send the webhook a `ping` event, to check the receiver and its signature check."""
    team = webhook.team
    actor_require(actor=actor, team=team, action=Action.MANAGE)
    _require_enabled(webhook)
    data = {"webhook": webhook.name, "by": actor.authenticated_user.get_username()}
    with transaction.atomic():
        (delivery,) = deliveries_create(team=team, webhooks=[webhook], kind=PING, data=data)
        audit_record(team=team, actor=actor, action="webhook.test", target=webhook, data={"name": webhook.name})
    return delivery


def delivery_redeliver(*, actor: Actor, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery's event again as a new delivery (same event id and body, a new delivery id)."""
    webhook = delivery.webhook
    team = webhook.team
    actor_require(actor=actor, team=team, action=Action.MANAGE)
    _require_enabled(webhook)
    with transaction.atomic():
        again = WebhookDelivery.objects.create(
            webhook=webhook,
            event_id=delivery.event_id,
            kind=delivery.kind,
            payload=delivery.payload,
            next_attempt_at=timezone.now(),
        )
        audit_record(
            team=team,
            actor=actor,
            action="webhook.redeliver",
            target=webhook,
            data={"name": webhook.name, "delivery": str(delivery.pk), "redelivery": str(again.pk)},
        )
        deliveries_send_on_commit([again])
    return again
