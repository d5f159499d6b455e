"""Teams, their members, API tokens and the audit trail."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from common.models import BaseModel
from teams.choices import Role

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
    "Use 1-63 lowercase letters, digits and inner hyphens (e.g. 'fraud-team').",
)


def default_auto_convert_targets() -> list[str]:
    return ["onnx", "tflite"]


class Team(BaseModel):
    """Own models, endpoints and tokens; the unit of isolation."""

    slug = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    auto_convert_targets = models.JSONField(
        default=default_auto_convert_targets,
        blank=True,
        help_text="Serving formats every Keras, SavedModel or scikit-learn upload is converted to automatically.",
    )
    trusted_pickle = models.BooleanField(
        default=False,
        help_text="Accept pickle/joblib uploads; they are opened only inside a Celery worker, never by the site.",
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(BaseModel):
    """Give a user a role in a team."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="uniq_team_member"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="membership_role_valid"),
        ]
        ordering = ["team__slug", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class ApiToken(BaseModel):
    """Let a user act on one team through the API, capped at a role; only the sha256 of the secret is kept."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="tokens")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=16, choices=Role.choices)
    prefix = models.CharField(
        max_length=16, unique=True, help_text="The visible start of the token, for recognising it."
    )
    digest = models.CharField(max_length=64, unique=True, help_text="sha256 hex digest of the whole token.")
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="apitoken_role_valid"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


class AuditEvent(BaseModel):
    """Record who did what to which of a team's objects, and why; or a site-wide security event (no team)."""

    # Null for events that belong to no team (a locked account, a throttled address): the site admin sees them.
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    token_prefix = models.CharField(max_length=16, blank=True, help_text="The token the actor used, if any.")
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["team", "-created_at"], name="audit_team_time")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} by {self.actor}"
