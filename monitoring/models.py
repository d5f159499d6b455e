"""What monitoring keeps in the database."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from common.models import BaseModel
from monitoring.choices import RATE_METRICS, AlertAction, AlertMetric, AlertOutcome


class WorkerHeartbeat(models.Model):
    """Record when a Celery worker last proved it runs tasks (written by a beat-scheduled task)."""

    worker = models.CharField(max_length=200, unique=True)
    last_seen = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.worker} @ {self.last_seen:%H:%M:%S}"


class MetricMinute(models.Model):
    """One web process's inference counts for one endpoint version in one minute (history; rows summed to read)."""

    endpoint = models.ForeignKey("deployments.Endpoint", on_delete=models.CASCADE, related_name="metric_minutes")
    version = models.PositiveIntegerField()
    role = models.CharField(max_length=16)  # primary | canary | shadow
    minute = models.DateTimeField(db_index=True)
    process = models.CharField(max_length=100)
    count = models.PositiveIntegerField()
    errors = models.PositiveIntegerField()
    disagreements = models.PositiveIntegerField(default=0)  # shadow rows: answers unlike the primary's
    latency_sum = models.FloatField()
    rows = models.PositiveBigIntegerField()
    # Per-bucket counts over monitoring.recorder.LATENCY_BOUNDS (+Inf last), and {status code: count}.
    latency_buckets = models.JSONField()
    codes = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "version", "role", "minute", "process"], name="uniq_metric_minute"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint_id} v{self.version} {self.role} {self.minute:%H:%M}: {self.count}"


class MetricSecond(models.Model):
    """One web process's inference counts for one endpoint version in one second: what the cluster's one evaluator
    judges alert rules and rollout gates on (every process's traffic, read within seconds; kept two hours)."""

    endpoint = models.ForeignKey("deployments.Endpoint", on_delete=models.CASCADE, related_name="metric_seconds")
    version = models.PositiveIntegerField()
    role = models.CharField(max_length=16)  # primary | canary | shadow
    second = models.BigIntegerField(db_index=True)  # epoch seconds: the second the requests were answered in
    process = models.CharField(max_length=100)
    count = models.PositiveIntegerField()
    errors = models.PositiveIntegerField()  # 5xx
    client_errors = models.PositiveIntegerField(default=0)  # 4xx
    disagreements = models.PositiveIntegerField(default=0)
    latency_buckets = models.JSONField()  # over monitoring.recorder.LATENCY_BOUNDS, +Inf last

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "version", "role", "second", "process"], name="uniq_metric_second"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint_id} v{self.version} {self.role} @{self.second}: {self.count}"


class EvaluatorLease(models.Model):
    """Which web process evaluates alert rules and rollout gates for the whole cluster, until when (renewed each
    second by its holder; taken over by a conditional UPDATE once it lapses)."""

    name = models.CharField(max_length=32, primary_key=True)
    holder = models.CharField(max_length=100)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: {self.holder} until {self.expires_at:%H:%M:%S}"


# The largest finite latency bucket (monitoring.recorder.LATENCY_BOUNDS[-1]) in ms: a p95 beyond it reads as this.
P95_CEILING_MS = 10_000.0


class AlertRule(BaseModel):
    """Watch one metric of an endpoint's live versions over a window; notify, or roll a fresh release back."""

    endpoint = models.ForeignKey("deployments.Endpoint", on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=100)
    metric = models.CharField(max_length=32, choices=AlertMetric.choices)
    threshold = models.FloatField(
        validators=[MinValueValidator(0.0)],
        help_text="Fires when the metric is above this: a fraction for rates (0.05 = 5 %), milliseconds for p95.",
    )
    window_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(10), MaxValueValidator(3600)]
    )
    min_requests = models.PositiveIntegerField(
        default=50,
        validators=[MinValueValidator(1)],
        help_text="Fewer requests than this in the window never fire (no false aborts at low traffic).",
    )
    action = models.CharField(max_length=16, choices=AlertAction.choices, default=AlertAction.NOTIFY)
    bake_seconds = models.PositiveIntegerField(
        default=600,
        validators=[MaxValueValidator(86400)],
        help_text="A rollback rule rolls a release back only this long after it went live; later it notifies.",
    )
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "name"], name="uniq_alert_rule_name"),
            models.CheckConstraint(
                condition=models.Q(window_seconds__gte=10, window_seconds__lte=3600), name="alert_rule_window_range"
            ),
            models.CheckConstraint(condition=models.Q(min_requests__gte=1), name="alert_rule_min_requests"),
            models.CheckConstraint(condition=models.Q(bake_seconds__lte=86400), name="alert_rule_bake_range"),
            models.CheckConstraint(
                condition=models.Q(threshold__gte=0)
                & (~models.Q(metric__in=RATE_METRICS) | models.Q(threshold__lt=1))
                & (~models.Q(metric=AlertMetric.P95_MS) | models.Q(threshold__lt=P95_CEILING_MS)),
                name="alert_rule_threshold_range",
            ),
        ]
        ordering = ["endpoint", "name"]

    def __str__(self) -> str:
        return f"{self.endpoint_id}: {self.name}"

    def clean(self) -> None:
        if self.threshold is None:
            return
        if self.metric in RATE_METRICS and not 0 <= self.threshold < 1:
            raise ValidationError({"threshold": "A rate is a fraction: at least 0 and below 1 (0.05 = 5 %)."})
        if self.metric == AlertMetric.P95_MS and not 0 <= self.threshold < P95_CEILING_MS:
            raise ValidationError({"threshold": f"A p95 threshold is in ms, at least 0 and below {P95_CEILING_MS:g}."})


class Alert(models.Model):
    """Record that a rule fired for one version of one release, the numbers that made it fire, and what it did."""

    # Kept when its rule is deleted: the alert is history (its rule's name and metric are copied).
    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    rule_name = models.CharField(max_length=100)
    endpoint = models.ForeignKey("deployments.Endpoint", on_delete=models.CASCADE, related_name="alerts")
    release = models.PositiveIntegerField()
    version = models.PositiveIntegerField()
    role = models.CharField(max_length=16)  # primary | canary | shadow
    metric = models.CharField(max_length=32, choices=AlertMetric.choices)
    value = models.FloatField()
    threshold = models.FloatField()
    window_seconds = models.PositiveIntegerField()
    requests = models.PositiveIntegerField()
    fired_at = models.DateTimeField(default=timezone.now, db_index=True)
    action_taken = models.CharField(max_length=16, choices=AlertOutcome.choices, default=AlertOutcome.NOTIFIED)
    rollback_release = models.PositiveIntegerField(null=True, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        constraints = [
            # One alert per rule, release and version, however many web processes see it at once.
            models.UniqueConstraint(fields=["rule", "release", "version"], name="uniq_alert_rule_release_version"),
        ]
        ordering = ["-fired_at", "-id"]

    def __str__(self) -> str:
        return f"{self.rule_name} on {self.endpoint_id} release {self.release} v{self.version}: {self.action_taken}"


class DriftWindow(models.Model):
    """One web process's input drift for one endpoint version over one window: PSI per feature vs the sample."""

    endpoint = models.ForeignKey("deployments.Endpoint", on_delete=models.CASCADE, related_name="drift_windows")
    version = models.PositiveIntegerField()
    ended_at = models.DateTimeField(db_index=True)
    process = models.CharField(max_length=100)
    rows = models.PositiveIntegerField()  # sampled rows the PSI is computed from
    psi = models.JSONField()  # {"x[0]": 0.02, ...}

    class Meta:
        ordering = ["-ended_at"]

    def __str__(self) -> str:
        return f"{self.endpoint_id} v{self.version} drift @ {self.ended_at:%H:%M}"
