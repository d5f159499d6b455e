from __future__ import annotations

from django.db import models


class ReleaseAction(models.TextChoices):
    CREATE = "create", "Created"
    PROMOTE = "promote", "Promoted"
    CANARY = "canary", "Canary"
    SHADOW = "shadow", "Shadow"
    ROLLBACK = "rollback", "Rolled back"


class RolloutState(models.TextChoices):
    # Created on an endpoint that requires approval: holds the endpoint, makes no release, and is not judged.
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    SUCCEEDED = "succeeded", "Succeeded"
    ROLLED_BACK = "rolled_back", "Rolled back"
    ABORTED = "aborted", "Aborted"


# A rollout in one of these holds its endpoint: one at a time (a partial unique constraint says so).
ROLLOUT_ACTIVE_STATES = (RolloutState.PENDING_APPROVAL, RolloutState.RUNNING, RolloutState.PAUSED)


class GateStatus(models.TextChoices):
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    WAITING = "waiting", "Waiting for requests"
    SKIPPED = "skipped", "Skipped"


class ChangeRequestKind(models.TextChoices):
    PROMOTE = "promote", "Promote"
    ROLLOUT = "rollout", "Rollout"


class ChangeRequestState(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    FAILED = "failed", "Failed"
