"""What a webhook can subscribe to, the body formats, and a delivery's states."""

from __future__ import annotations

from django.db import models

# The team event kinds a webhook may subscribe to (common.events publishes them). `ping` is not one: it is sent only
# by "Send test".
EVENT_KINDS: tuple[str, ...] = ("release", "rollout", "approval", "alert", "job", "version", "model")
PING = "ping"


class WebhookFormat(models.TextChoices):
    MODELDECK = "modeldeck", "ModelDeck JSON (signed)"
    SLACK = "slack", "Slack-compatible text"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
