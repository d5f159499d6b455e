"""Endpoints and their releases: which version serves, with what canary and shadow, decided by whom and why."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from common.models import BaseModel
from deployments.choices import ReleaseAction
from registry.models import ModelVersion, RegisteredModel
from teams.models import Team, slug_validator


class Endpoint(BaseModel):
    """Name a serving slot (globally unique, e.g. `fraud-prod`) bound to one registered model."""

    name = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="endpoints")
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="endpoints")
    protected = models.BooleanField(default=False, help_text="Only admins change a protected (production) endpoint.")
    public = models.BooleanField(default=False, help_text="Public endpoints answer inference without a token.")
    # Dynamic batching, as Triton's: off while max_batch_size is 0.
    max_batch_size = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(1024)],
        help_text="Stack concurrent requests up to this many rows per model call (0 = no batching).",
    )
    max_queue_delay_ms = models.FloatField(
        default=2.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1000.0)],
        help_text="How long the first queued request waits for others to batch with.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Release(BaseModel):
    """Record one immutable state of an endpoint; the newest is the live one, and history stays linear."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="releases")
    number = models.PositiveIntegerField()
    action = models.CharField(max_length=16, choices=ReleaseAction.choices)
    primary = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="primary_releases")
    canary = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="canary_releases"
    )
    canary_percent = models.PositiveSmallIntegerField(default=0)
    shadow = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="shadow_releases"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True)
    # The alert rule that made an automatic rollback, by name: the release's history outlives the rule.
    rule_name = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "number"], name="uniq_endpoint_release"),
            models.CheckConstraint(condition=models.Q(canary_percent__lte=100), name="release_canary_percent_range"),
            models.CheckConstraint(
                condition=models.Q(canary__isnull=True, canary_percent=0) | models.Q(canary__isnull=False),
                name="release_percent_needs_canary",
            ),
        ]
        ordering = ["endpoint", "-number"]

    def __str__(self) -> str:
        return f"{self.endpoint} release {self.number}"

    @property
    def by(self) -> str | None:
        """Who made the release, as history shows it: a username, "automatic (rule NAME)", or None (user gone)."""
        if self.rule_name:
            return f"automatic (rule {self.rule_name})"
        return self.actor.get_username() if self.actor is not None else None
