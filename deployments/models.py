"""Endpoints and their releases: which version serves, with what canary and shadow, decided by whom and why; and
the rollouts that move a canary step by step while its gates hold."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from common.models import BaseModel
from deployments.choices import (
    ROLLOUT_ACTIVE_STATES,
    ChangeRequestKind,
    ChangeRequestState,
    ReleaseAction,
    RolloutState,
)
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
    # Four eyes: promotes and rollouts become change requests that another admin approves (rollbacks never wait).
    requires_approval = models.BooleanField(
        default=False, help_text="Promotes and rollouts wait for a second admin's approval; rollbacks never wait."
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


class Rollout(BaseModel):
    """Move a version's canary share step by step while its gates hold; promote it after the last step."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="rollouts")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="rollouts")
    state = models.CharField(max_length=20, choices=RolloutState.choices, default=RolloutState.RUNNING)
    # [{"percent": 5, "bake_seconds": 300}, ...]: the canary share of each step and how long its gates must hold.
    steps = models.JSONField()
    # 1-based index into steps; the step whose share is live while running or paused.
    step = models.PositiveSmallIntegerField(default=1)
    step_started_at = models.DateTimeField()
    # Every gate's threshold, defaults filled in; null turns a gate off.
    gates = models.JSONField(default=dict)
    preflight = models.JSONField(default=list, blank=True, help_text="The pre-flight checks, as judged at the start.")
    # The latest evaluation of each gate ({gate: {status, passed, value, threshold, window_seconds, requests}}):
    # rewritten each time the rollout is judged; RolloutEvaluation keeps only the changes.
    evaluations = models.JSONField(default=dict, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    allow_signature_change = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    # Why it ended: the failing numbers of a rollback, the release that aborted it, "promoted in release 7".
    outcome = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint"],
                condition=models.Q(state__in=ROLLOUT_ACTIVE_STATES),
                name="uniq_active_rollout_per_endpoint",
            ),
        ]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"rollout {self.pk} of v{self.version.number} on {self.endpoint}"

    @property
    def percent(self) -> int:
        """The canary share of the current step."""
        return int(self.steps[self.step - 1]["percent"])

    @property
    def bake_seconds(self) -> int:
        return int(self.steps[self.step - 1]["bake_seconds"])


class RolloutEvaluation(BaseModel):
    """Record one gate's evaluation when it matters: a state change, or its pass/fail flipping."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="history")
    step = models.PositiveSmallIntegerField()
    gate = models.CharField(max_length=40)
    status = models.CharField(max_length=10)
    passed = models.BooleanField(null=True)
    value = models.FloatField(null=True)
    threshold = models.FloatField(null=True)
    window_seconds = models.FloatField(default=0.0)
    requests = models.PositiveIntegerField(default=0)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["rollout", "id"]


class ChangeRequest(BaseModel):
    """Ask for a promote or a rollout on an endpoint that requires approval; another admin approves or rejects it."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="change_requests")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="change_requests")
    kind = models.CharField(max_length=16, choices=ChangeRequestKind.choices)
    # {"version", "canary_percent", "shadow_version", "clear_shadow", "allow_signature_change", "reason"}
    change = models.JSONField(default=dict)
    rollout = models.ForeignKey(
        Rollout, null=True, blank=True, on_delete=models.SET_NULL, related_name="change_requests"
    )
    state = models.CharField(max_length=16, choices=ChangeRequestState.choices, default=ChangeRequestState.PENDING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    # What applying it made ({"release": 7} or {"rollout": 3}), or why applying failed ({"error": "..."}).
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint"],
                condition=models.Q(state=ChangeRequestState.PENDING),
                name="uniq_pending_change_request_per_endpoint",
            ),
        ]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"change request {self.pk} ({self.kind} on {self.endpoint})"

    @property
    def version_number(self) -> int | None:
        version = self.change.get("version")
        return int(version) if version is not None else None
