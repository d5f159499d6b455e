"""Choices of the monitoring app: what an alert rule watches, what it does, and what a fired alert did."""

from __future__ import annotations

from django.db import models


class AlertMetric(models.TextChoices):
    # Rates are fractions (0.05 = 5 %); p95 is in milliseconds, read from the latency histogram's buckets.
    ERROR_RATE = "error_rate", "Error rate (answers >= 500 / requests)"
    P95_MS = "p95_ms", "p95 latency (ms)"
    DISAGREEMENT_RATE = "disagreement_rate", "Shadow disagreement rate"
    # The largest population stability index of any input feature against the version's sample, per drift window.
    DRIFT_PSI = "drift_psi", "Input drift (largest PSI of any feature)"


RATE_METRICS = (AlertMetric.ERROR_RATE, AlertMetric.DISAGREEMENT_RATE)


class AlertAction(models.TextChoices):
    NOTIFY = "notify", "Notify"
    ROLLBACK = "rollback", "Roll back"


class AlertOutcome(models.TextChoices):
    NOTIFIED = "notified", "Notified"
    ROLLED_BACK = "rolled_back", "Rolled back"
    ROLLBACK_FAILED = "rollback_failed", "Rollback failed"
