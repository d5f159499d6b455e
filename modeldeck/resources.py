"""The shapes of what the REST API returns, as typed dictionaries (they stay plain JSON for `--json`)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class TeamRole(TypedDict):
    slug: str
    name: str
    role: str


class Me(TypedDict):
    username: str
    token: dict[str, Any] | None
    teams: list[TeamRole]


class Model(TypedDict):
    team: str
    name: str
    description: str
    created_by: str | None
    created_at: str
    version_count: int
    latest_version: int | None
    archived_at: str | None
    archived_by: str | None


class Version(TypedDict):
    model: str
    number: int
    format: str
    status: str
    status_message: str
    filename: str
    sha256: str
    size: int
    signature: dict[str, Any]
    framework: str
    framework_version: str
    metadata: dict[str, Any]
    description: str
    tags: list[str]
    parent: int | None
    recipe: dict[str, Any]
    parity: dict[str, Any]
    parity_override: dict[str, Any] | None
    benchmark: dict[str, Any]
    sample_filename: str
    created_by: str | None
    created_at: str
    archived_at: str | None
    archived_by: str | None
    artifacts_deleted_at: str | None


class Job(TypedDict):
    id: int
    team: str
    kind: str
    status: str
    progress: int
    model: str
    version: int
    params: dict[str, Any]
    result: dict[str, Any] | None
    result_version: int | None
    error: str
    trace: str | None  # the traceback behind `error`, for team admins (None for everyone else)
    log: list[dict[str, str]]
    worker: str
    attempts: int
    cancel_requested: bool
    created_by: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class Release(TypedDict):
    number: int
    action: str
    primary: int
    canary: int | None
    canary_percent: int
    shadow: int | None
    actor: str | None
    by: str | None  # the username, or "automatic (rule NAME)" for an automatic rollback
    rule: str | None
    reason: str
    created_at: str


class Endpoint(TypedDict):
    name: str
    team: str
    model: str
    protected: bool
    public: bool
    max_batch_size: int
    max_queue_delay_ms: float
    requires_approval: bool  # promotes and rollouts are change requests another admin approves
    release: Release
    created_at: str


class RolloutStep(TypedDict):
    percent: int
    bake_seconds: int


class GateEvaluation(TypedDict):
    gate: str
    title: str
    status: str  # passed, failed, waiting (fewer canary requests than the minimum), skipped
    passed: bool | None
    value: float | None
    threshold: float | None
    window_seconds: float
    requests: int
    note: str


class Rollout(TypedDict):
    id: int
    endpoint: str
    version: int
    state: str  # pending_approval, running, paused, succeeded, rolled_back, aborted
    step: int
    steps: list[RolloutStep]
    percent: int
    step_started_at: str
    seconds_left: float | None
    gates: dict[str, float | None]
    preflight: list[dict[str, Any]]
    evaluations: list[GateEvaluation]
    evaluated_at: str | None
    reason: str
    outcome: str
    actor: str | None
    created_at: str
    finished_at: str | None
    history: NotRequired[list[dict[str, Any]]]  # one rollout's read: the evaluations kept when a verdict changed


class ChangeRequest(TypedDict):
    """A promote or rollout waiting for (or decided by) a second admin, on an endpoint that requires approval."""

    id: int
    team: str
    endpoint: str
    kind: str  # promote, rollout
    state: str  # pending, approved, rejected, expired, failed
    version: int | None
    change: dict[str, Any]
    rollout: int | None
    rollout_state: str | None
    requested_by: str | None
    requested_at: str
    expires_at: str
    decided_by: str | None
    decided_at: str | None
    decision_reason: str
    result: dict[str, Any]


ROLLOUT_DONE_STATES = ("succeeded", "rolled_back", "aborted")

JOB_DONE_STATUSES = ("succeeded", "failed", "cancelled")
