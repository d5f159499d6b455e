"""What monitoring keeps in the database."""

from __future__ import annotations

from django.db import models


class WorkerHeartbeat(models.Model):
    """Record when a Celery worker last proved it runs tasks (written by a beat-scheduled task)."""

    worker = models.CharField(max_length=200, unique=True)
    last_seen = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.worker} @ {self.last_seen:%H:%M:%S}"
