"""Receivers: a worker's heartbeat the moment it is ready; a user's sockets re-checked when a membership changes;
a finished job counted."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready
from django.dispatch import receiver

from common.events import user_sockets_recheck
from monitoring.prometheus import jobs_count
from monitoring.services import worker_heartbeat_record
from registry.signals import job_finished
from teams.signals import membership_changed


@worker_ready.connect
def _heartbeat_on_ready(sender: Any = None, **kwargs: Any) -> None:
    worker_heartbeat_record(worker=getattr(sender, "hostname", None) or "unknown")


@receiver(membership_changed)
def _recheck_sockets_on_membership_change(sender: Any, *, user_id: int, **kwargs: Any) -> None:
    user_sockets_recheck(user_id=user_id)


@receiver(job_finished)
def _count_finished_job(sender: Any, *, kind: str, status: str, **kwargs: Any) -> None:
    jobs_count(kind=kind, status=status)
