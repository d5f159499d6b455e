"""The Celery application; its settings are the CELERY_* Django settings."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import before_task_publish

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("modeldeck")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@before_task_publish.connect(weak=False)
def _worker_decides_time_limits(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Let the worker's own CELERY_TASK_*_TIME_LIMIT apply, not the sender's copy of the defaults.

    Celery writes the sending process's task_time_limit / task_soft_time_limit into every message and the
    worker obeys those over its settings, so a limit set on the workers alone would never take effect.
    Limits a caller sets explicitly for one call differ from the defaults and are kept.
    """
    if headers is None:
        return
    defaults = [app.conf.task_time_limit, app.conf.task_soft_time_limit]
    if list(headers.get("timelimit") or ()) == defaults:
        headers["timelimit"] = [None, None]
