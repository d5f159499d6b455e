"""Abstract models every app builds on."""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class BaseModel(models.Model):
    """Give a model creation and update timestamps."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class IdempotencyKey(models.Model):
    """Remember the answer to a POST sent with an Idempotency-Key: a retry gets it again, not a second object."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    route = models.TextField(help_text="The method and path the key was first used with.")
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the route, query and body.")
    status = models.PositiveSmallIntegerField()
    body = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="uniq_idempotency_key")]

    def __str__(self) -> str:
        return f"{self.key} ({self.route})"


class OutboxEvent(models.Model):
    """A team event waiting for the web processes to deliver it (embedded mode only, common.events).

    Without a shared channel layer (no REDIS_URL), a worker's publish would reach no socket: it is written here
    instead, and each web process's relay reads the new rows and sends them to its own sockets."""

    team = models.CharField(max_length=100)
    kind = models.CharField(max_length=30)
    data = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.kind} for {self.team}"
