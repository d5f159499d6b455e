"""What monitoring keeps in the database."""

from __future__ import annotations

from django.db import models


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
