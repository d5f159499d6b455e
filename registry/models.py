"""Registered models and their immutable, numbered versions."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from common.models import BaseModel
from registry.choices import JobKind, JobStatus, ModelFormatName, VersionStatus
from teams.models import Team

model_name_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9_.-]{0,98}[a-z0-9])?$",
    "Use 1-100 lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or digit.",
)


class RegisteredModel(BaseModel):
    """Name a model within a team; its versions hold the files."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=100, validators=[model_name_validator])
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Archived: hidden from default lists, refused for new versions and deployments, kept whole (it can be undone).
    archived_at = models.DateTimeField(null=True, blank=True)
    archived_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="uniq_team_model_name")]
        ordering = ["team__slug", "name"]

    def __str__(self) -> str:
        return f"{self.team.slug}/{self.name}"


class ModelVersion(BaseModel):
    """Hold one immutable model file, numbered 1, 2, 3... within its model, with what inspection found."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    format = models.CharField(max_length=16, choices=ModelFormatName.choices)
    # Content-addressed key in the artifact storage: the same bytes are stored once, whatever their name.
    artifact_key = models.CharField(max_length=200)
    filename = models.CharField(max_length=255, help_text="The name the file was uploaded with.")
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.BigIntegerField()
    signature = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=VersionStatus.choices, default=VersionStatus.PROCESSING)
    status_message = models.TextField(blank=True)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    framework = models.CharField(max_length=32, blank=True)
    framework_version = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True, help_text="Format facts: opset, producer, estimator...")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    recipe = models.JSONField(default=dict, blank=True, help_text="How this version was made from its parent.")
    # "onnx:int8" for a converted version, "" for an upload: with the parent, it names a conversion uniquely.
    recipe_key = models.CharField(max_length=32, blank=True)
    parity = models.JSONField(default=dict, blank=True, help_text="Parity report against the parent version.")
    parity_override_reason = models.TextField(blank=True)
    parity_override_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    parity_override_at = models.DateTimeField(null=True, blank=True)
    benchmark = models.JSONField(default=dict, blank=True, help_text="The latest benchmark of this version.")
    sample_key = models.CharField(max_length=200, blank=True)
    sample_filename = models.CharField(max_length=255, blank=True)
    # Archived: hidden from default lists and never newly deployed; its files are collected once it has been archived
    # for MODELDECK_ARTIFACT_RETENTION_DAYS and no release keeps it (registry.services.archive).
    archived_at = models.DateTimeField(null=True, blank=True)
    archived_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When the collector deleted its stored files (the row stays, as history): it can no longer be unarchived.
    artifacts_deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "number"], name="uniq_model_version"),
            # Re-running a conversion finds the version it made before instead of making a second one.
            models.UniqueConstraint(
                fields=["parent", "recipe_key"], condition=~models.Q(recipe_key=""), name="uniq_conversion"
            ),
            models.CheckConstraint(condition=models.Q(number__gte=1), name="version_number_positive"),
            models.CheckConstraint(condition=models.Q(status__in=VersionStatus.values), name="version_status_valid"),
            models.CheckConstraint(
                condition=models.Q(artifacts_deleted_at__isnull=True) | models.Q(archived_at__isnull=False),
                name="version_collected_is_archived",
            ),
        ]
        ordering = ["model", "-number"]

    def __str__(self) -> str:
        return f"{self.model} v{self.number}"


class Job(BaseModel):
    """Track one unit of background work on a version (a conversion, a benchmark): status, progress, log."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="jobs")
    params = models.JSONField(default=dict, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    log = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    # The full traceback behind `error` (a converter's internals): shown to team admins only.
    trace = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    result_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="produced_by"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=JobStatus.values), name="job_status_valid"),
            models.CheckConstraint(condition=models.Q(kind__in=JobKind.values), name="job_kind_valid"),
            models.CheckConstraint(condition=models.Q(progress__lte=100), name="job_progress_range"),
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat")]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"
