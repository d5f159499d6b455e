"""Reads of a team's webhooks and deliveries, for its admins only (a URL can be a credential); another team's are
not found, whatever their id."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from common.errors import NotFoundError
from teams.choices import Action
from teams.models import Team
from teams.permissions import Actor, actor_require
from webhooks.models import Webhook, WebhookDelivery

DELIVERIES_SHOWN = 20


def webhook_list(*, actor: Actor, team: Team) -> QuerySet[Webhook]:
    actor_require(actor=actor, team=team, action=Action.MANAGE)
    return Webhook.objects.filter(team=team).select_related("team", "created_by").order_by("name")


def webhook_get(*, actor: Actor, team: Team, webhook_id: Any) -> Webhook:
    actor_require(actor=actor, team=team, action=Action.MANAGE)
    webhook = Webhook.objects.select_related("team", "created_by").filter(team=team, pk=webhook_id).first()
    if webhook is None:
        raise NotFoundError(f"Webhook {webhook_id} not found in team '{team.slug}'.")
    return webhook


def delivery_list(*, actor: Actor, webhook: Webhook) -> QuerySet[WebhookDelivery]:
    """The webhook's deliveries, newest first."""
    actor_require(actor=actor, team=webhook.team, action=Action.MANAGE)
    return WebhookDelivery.objects.filter(webhook=webhook).order_by("-created_at")


def delivery_get(*, actor: Actor, webhook: Webhook, delivery_id: Any) -> WebhookDelivery:
    actor_require(actor=actor, team=webhook.team, action=Action.MANAGE)
    delivery = WebhookDelivery.objects.select_related("webhook__team").filter(webhook=webhook, pk=delivery_id).first()
    if delivery is None:
        raise NotFoundError(f"Delivery {delivery_id} not found for webhook '{webhook.name}'.")
    return delivery
