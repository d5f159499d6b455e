"""Signals the registry sends, so higher layers react without registry importing them; worker start-up housekeeping."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from celery.signals import worker_ready
from django.dispatch import Signal

# Sent once when a job reaches a final status (succeeded, failed, cancelled); arguments: kind and status.
# monitoring counts it for Prometheus: registry sits below monitoring and must not import it.
job_finished = Signal()

# Sent to ask the layers above which of some versions they still use, so that the registry never archives a version
# that serves nor collects the files of one that a rollback could bring back; arguments: `versions` (ids) and
# `purpose`: "archive" (what serves now) or "collect" (also what a rollback could return to). Each receiver returns
# a list of {"version": id, "endpoint": name, "role": "primary" | "canary" | "shadow" | "rollback"}
# (deployments answers from the endpoints' releases; registry sits below deployments and must not import it).
versions_in_use = Signal()

logger = logging.getLogger(__name__)

TEMP_PREFIX = "modeldeck-"
STALE_AFTER_SECONDS = 3600


def stale_temp_dirs_delete(root: Path | None = None, older_than: float = STALE_AFTER_SECONDS) -> list[Path]:
    """Remove job scratch folders and files a killed worker left behind (SIGKILL skips their cleanup)."""
    root = root or Path(tempfile.gettempdir())
    cutoff = time.time() - older_than
    removed = []
    for entry in root.glob(f"{TEMP_PREFIX}*"):
        # Old ones only: another worker on this host may be using a fresh one right now.
        if entry.stat().st_mtime >= cutoff:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@worker_ready.connect
def _clean_scratch_on_start(sender: Any = None, **kwargs: Any) -> None:
    removed = stale_temp_dirs_delete()
    if removed:
        logger.info("Removed %d stale job scratch folders", len(removed))
