"""Services send Celery tasks by name (common/registered_tasks.py): every name is registered once Django has started,
in any process, and it finds the task its tasks module declares, with that task's own options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery.exceptions import NotRegistered

from common.registered_tasks import registered_task
from registry import tasks as registry_tasks
from registry.services.jobs import JOB_RUN_TASK
from registry.services.versions import INSPECT_TASK
from webhooks import tasks as webhooks_tasks
from webhooks.deliveries import DELIVERY_TASK

ROOT = Path(__file__).resolve().parents[2]
SENT_BY_NAME = {
    JOB_RUN_TASK: registry_tasks.job_run_task,
    INSPECT_TASK: registry_tasks.model_version_inspect_task,
    DELIVERY_TASK: webhooks_tasks.webhook_delivery_task,
}


def test_a_name_finds_the_declared_task_with_its_options() -> None:
    for name, task in SENT_BY_NAME.items():
        found = registered_task(name)
        assert found is task._get_current_object()
        assert (found.name, found.acks_late, found.ignore_result) == (name, True, True)
    assert registered_task(JOB_RUN_TASK).reject_on_worker_lost is True
    assert registered_task(DELIVERY_TASK).reject_on_worker_lost is True


def test_an_unknown_name_is_an_error_not_a_broker_outage() -> None:
    with pytest.raises(NotRegistered):
        registered_task("registry.tasks.no_such_task")


def test_django_start_up_registers_every_task_sent_by_name() -> None:
    # A fresh process that imports no tasks module itself, as a web process that has not yet sent anything.
    code = (
        "import json, django; django.setup(); from celery import current_app; "
        f"print(json.dumps(sorted(set({sorted(SENT_BY_NAME)!r}) - set(current_app.tasks))))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
