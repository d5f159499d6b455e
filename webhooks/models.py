"""Team webhooks and their deliveries."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from common.models import BaseModel
from teams.models import Team
from webhooks.choices import DeliveryState, WebhookFormat


class Webhook(BaseModel):
    """Send a team's events of the chosen kinds to a URL; the signing secret is kept encrypted (webhooks.secrets)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(max_length=100)
    url = models.CharField(max_length=2000)
    events = models.JSONField(default=list, help_text="The event kinds sent (webhooks.choices.EVENT_KINDS).")
    format = models.CharField(max_length=16, choices=WebhookFormat.choices, default=WebhookFormat.MODELDECK)
    enabled = models.BooleanField(default=True)
    # Encrypted, not hashed: the server computes each delivery's HMAC with it.
    secret_encrypted = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="uniq_team_webhook_name"),
            models.CheckConstraint(condition=models.Q(format__in=WebhookFormat.values), name="webhook_format_valid"),
        ]
        ordering = ["team__slug", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.team})"


class WebhookDelivery(BaseModel):
    """One event sent (or to be sent) to one webhook, with the outcome of every attempt."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(
        help_text="The event's id (the body's `id`): the same for every webhook and redelivery."
    )
    kind = models.CharField(max_length=30)
    payload = models.JSONField(encoder=DjangoJSONEncoder, help_text="The ModelDeck body (before any Slack rendering).")
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When a pending delivery is tried next.")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    response_ms = models.PositiveIntegerField(null=True, blank=True)
    log = models.JSONField(default=list, blank=True, help_text="One entry per attempt: at, status_code, error, ms.")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(state__in=DeliveryState.values), name="delivery_state_valid"),
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["webhook", "-created_at"], name="delivery_webhook_time"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} to {self.webhook_id} ({self.state})"
