"""Progressive rollouts: move a canary share step by step while its gates hold, promote after the last step, and
roll back on the first gate that fails.

The state lives in the database and every transition is a conditional UPDATE on (id, state, step), so a rollout
carries on across web and worker restarts, and two judges (or a judge and a person) racing never apply a step twice.
Monitoring's evaluator calls `rollouts_running` and `rollout_judge` once a second with each version's traffic; this
module never imports monitoring.

Gates and their defaults (`ROLLOUT_GATE_DEFAULTS`; `null` turns one off):

| gate | default | fails when |
|---|---|---|
| `min_requests` | 100 | (never fails) the canary has fewer requests in the step: nothing is judged yet |
| `error_rate` | 0.05 | canary 5xx / requests > threshold |
| `error_rate_relative` | 2.0 | canary error rate > threshold x primary error rate + 0.01 |
| `p95_ratio` | 1.5 | canary p95 / primary p95 > threshold |
| `disagreement_rate` | 0.1 | shadow (or canary) answers unlike the primary's / requests > threshold |
| `drift_psi` | 0.25 | the canary's largest drift PSI in the step > threshold |
| `benchmark_p50_slower` | 0.2 | pre-flight: benchmark p50 (batch 1) / primary's - 1 > threshold, and > 0.05 ms slower |

Pre-flight, before the first step: parity passed or accepted by an admin, the signature compatible with the
primary's (or `allow_signature_change`), and the benchmark gate above.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from common.errors import ApplicationError
from deployments.choices import GateStatus, ReleaseAction, RolloutState
from deployments.models import Endpoint, Release, Rollout, RolloutEvaluation
from deployments.selectors import rollout_active, rollouts_running, version_signature_differences
from deployments.services import (
    _release_append,
    _require_change,
    _versions_lock_unarchived,
    rollout_record,
    version_check_deployable,
)
from registry.models import ModelVersion
from registry.selectors import version_parity_blocks
from teams.choices import Action
from teams.permissions import Actor, actor_require

__all__ = [
    "ROLLOUT_GATE_DEFAULTS",
    "Traffic",
    "rollout_abort",
    "rollout_advance",
    "rollout_create",
    "rollout_judge",
    "rollout_pause",
    "rollout_resume",
    "rollout_seconds_left",
    "rollout_start_approved",
    "rollouts_running",
]

ROLLOUT_GATE_DEFAULTS: dict[str, float] = {
    "min_requests": 100,
    "error_rate": 0.05,
    "error_rate_relative": 2.0,
    "p95_ratio": 1.5,
    "disagreement_rate": 0.1,
    "drift_psi": 0.25,
    "benchmark_p50_slower": 0.2,
}
# What the canary's error rate may exceed the primary's multiple by: a primary with no errors leaves a canary room
# for one error in a hundred.
ERROR_RATE_RELATIVE_SLACK = 0.01
GATE_LABELS = {
    "min_requests": "canary requests",
    "error_rate": "canary error rate",
    "error_rate_relative": "canary error rate vs primary",
    "p95_ratio": "p95 latency ratio to primary",
    "disagreement_rate": "disagreement rate",
    "drift_psi": "drift PSI",
    "benchmark_p50_slower": "benchmark p50 slower than primary",
    "parity": "parity",
    "signature": "signature",
}
MAX_STEPS = 20
MAX_BAKE_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Traffic:
    """One version's answered requests over a window, summed over every web process."""

    requests: int
    errors: int  # answered 5xx
    disagreements: int  # shadow answers unlike the primary's (0 for non-shadow)
    p95_ms: float | None  # None without requests


def rollout_gates_resolve(gates: dict[str, Any] | None) -> dict[str, float | None]:
    """Every gate's threshold: the defaults, overridden by `gates` (None turns one off); unknown names refused."""
    gates = gates or {}
    unknown = sorted(set(gates) - set(ROLLOUT_GATE_DEFAULTS))
    if unknown:
        raise ApplicationError(
            "invalid",
            f"Unknown gate {', '.join(unknown)}; the gates are {', '.join(ROLLOUT_GATE_DEFAULTS)}.",
            {"gates": [f"Unknown: {', '.join(unknown)}.", f"Known: {', '.join(ROLLOUT_GATE_DEFAULTS)}."]},
        )
    resolved: dict[str, float | None] = {}
    for name, default in ROLLOUT_GATE_DEFAULTS.items():
        value = gates.get(name, default)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ApplicationError(
                    "invalid", f"Gate {name} needs a number of 0 or more, or null.", {"gates": [f"{name}: {value!r}"]}
                )
            value = int(value) if name == "min_requests" else float(value)
        resolved[name] = value
    return resolved


def rollout_steps_validate(steps: list[dict[str, Any]]) -> list[dict[str, int]]:
    """Steps as stored: 1 to 20 of them, canary percents rising within 1-99, bake times of 0 s to a week."""
    problems: list[str] = []
    if not 1 <= len(steps) <= MAX_STEPS:
        problems.append(f"Give 1 to {MAX_STEPS} steps.")
    cleaned: list[dict[str, int]] = []
    for index, step in enumerate(steps, start=1):
        percent, bake = step.get("percent"), step.get("bake_seconds")
        if not isinstance(percent, int) or isinstance(percent, bool) or not 1 <= percent <= 99:
            problems.append(f"Step {index}: percent is a whole number from 1 to 99 (the last step promotes).")
        elif cleaned and percent <= cleaned[-1]["percent"]:
            problems.append(f"Step {index}: percent must rise ({percent} after {cleaned[-1]['percent']}).")
        if not isinstance(bake, int) or isinstance(bake, bool) or not 0 <= bake <= MAX_BAKE_SECONDS:
            problems.append(f"Step {index}: bake_seconds is a whole number from 0 to {MAX_BAKE_SECONDS}.")
        cleaned.append({"percent": percent, "bake_seconds": bake})  # type: ignore[dict-item]
    if problems:
        raise ApplicationError("invalid", "Invalid rollout steps.", {"steps": problems})
    return cleaned


def rollout_seconds_left(rollout: Rollout, now: datetime | None = None) -> float | None:
    """What is left of the current step's bake time; None unless the rollout is running."""
    if rollout.state != RolloutState.RUNNING:
        return None
    elapsed = ((now or timezone.now()) - rollout.step_started_at).total_seconds()
    return round(max(0.0, rollout.bake_seconds - elapsed), 1)


def _duration_seconds(text: str) -> int:
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", text.strip().lower())
    if not text.strip() or match is None:
        raise ApplicationError("invalid", f"{text!r} is not a duration.", {"bake": ["Use e.g. 300, 90s, 5m or 1h30m."]})
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def rollout_steps_parse(percents: str, bake: str) -> list[dict[str, Any]]:
    """Steps as a person types them: "5,25,50" and one bake time for all ("5m") or one per step ("5m,10m,10m")."""
    try:
        shares = [int(part) for part in percents.split(",") if part.strip()]
    except ValueError:
        raise ApplicationError(
            "invalid", "Invalid steps.", {"steps": ["Percents separated by commas, e.g. 5,25,50."]}
        ) from None
    bakes = [_duration_seconds(part) for part in (bake or "5m").split(",")]
    if len(bakes) not in (1, len(shares)):
        raise ApplicationError("invalid", "Invalid bake times.", {"bake": ["Give one, or one per step."]})
    return [
        {"percent": share, "bake_seconds": bakes[0] if len(bakes) == 1 else bakes[i]} for i, share in enumerate(shares)
    ]


# A p50 difference below this is a benchmark's noise on a shared machine, not the model: a 6 µs model measured at 9 µs
# is "58 % slower" and no slower at all next to a request's own cost (about 100 µs). It never fails the gate.
BENCHMARK_NOISE_MS = 0.05


def _benchmark_p50(version: ModelVersion) -> float | None:
    for batch in (version.benchmark or {}).get("batches", []):
        if batch.get("batch_size") == 1 and batch.get("p50_ms"):
            return float(batch["p50_ms"])
    return None


def _preflight(
    *, current: Release, version: ModelVersion, gates: dict[str, float | None], allow_signature_change: bool
) -> list[dict[str, Any]]:
    """The checks made before the first step, each `{gate, passed, value, threshold, note}`."""
    checks: list[dict[str, Any]] = []
    parity = version.parity or {}
    blocked = version_parity_blocks(version)
    note = "failed, not accepted" if blocked else ("accepted by an admin" if version.parity_override_at else "")
    note = note or ("passed" if parity else "no parity report (not a conversion)")
    checks.append({"gate": "parity", "passed": not blocked, "value": None, "threshold": None, "note": note})
    differences = version_signature_differences(primary=current.primary, version=version)
    checks.append(
        {
            "gate": "signature",
            "passed": not differences or allow_signature_change,
            "value": len(differences),
            "threshold": None,
            "note": (
                f"{len(differences)} difference(s) from v{current.primary.number}"
                + (", allowed" if allow_signature_change else "")
                if differences
                else f"compatible with v{current.primary.number}"
            ),
        }
    )
    threshold = gates["benchmark_p50_slower"]
    if threshold is not None:
        mine, theirs = _benchmark_p50(version), _benchmark_p50(current.primary)
        if mine is None or theirs is None:
            checks.append(
                {
                    "gate": "benchmark_p50_slower",
                    "passed": None,
                    "value": None,
                    "threshold": threshold,
                    "note": "no benchmark",
                }
            )
        else:
            slower = round(mine / theirs - 1, 4)
            within_noise = mine - theirs <= BENCHMARK_NOISE_MS
            note = f"p50 {mine:g} ms vs v{current.primary.number}'s {theirs:g} ms"
            checks.append(
                {
                    "gate": "benchmark_p50_slower",
                    "passed": slower <= threshold or within_noise,
                    "value": slower,
                    "threshold": threshold,
                    "note": note
                    + (f", within {BENCHMARK_NOISE_MS:g} ms" if within_noise and slower > threshold else ""),
                }
            )
    return checks


def _active_conflict(active: Rollout) -> ApplicationError:
    return ApplicationError(
        "rollout_active",
        f"'{active.endpoint.name}' already has rollout {active.pk} of v{active.version.number} ({active.state}); "
        "abort it or let it finish first.",
        {"rollout": active.pk, "state": active.state},
        status=409,
    )


def rollout_create(
    *,
    actor: Actor,
    endpoint: Endpoint,
    version: ModelVersion,
    steps: list[dict[str, Any]],
    gates: dict[str, Any] | None = None,
    allow_signature_change: bool = False,
    reason: str = "",
    pending_approval: bool = False,
) -> Rollout:
    """Start a rollout: check the pre-flight gates, then release the version as a canary at the first step's share.

    One active rollout per endpoint (409 `rollout_active` naming it); a failed pre-flight gate is 409
    `preflight_failed` with every check in its detail. With `pending_approval` (an endpoint that requires approval,
    deployments.approvals) the rollout waits in `pending_approval`: no release, not judged, until
    `rollout_start_approved`; any developer may ask for one.
    """
    if pending_approval:
        actor_require(actor=actor, team=endpoint.team, action=Action.DEVELOP)
    else:
        _require_change(actor, endpoint)
    cleaned_steps = rollout_steps_validate(steps)
    resolved = rollout_gates_resolve(gates)
    try:
        with transaction.atomic():
            # The endpoint's lock first, as every release takes it: the active check and the release then agree.
            Endpoint.objects.select_for_update().filter(pk=endpoint.pk).exists()
            active = rollout_active(endpoint=endpoint)
            if active is not None:
                raise _active_conflict(active)
            current = endpoint.releases.select_related("primary").order_by("-number").first()
            assert current is not None
            if version.pk == current.primary_id:
                raise ApplicationError(
                    "invalid", f"v{version.number} is already the primary of '{endpoint.name}'.", status=409
                )
            checks = _preflight(
                current=current, version=version, gates=resolved, allow_signature_change=allow_signature_change
            )
            failed = [check for check in checks if check["passed"] is False]
            if failed:
                raise ApplicationError(
                    "preflight_failed",
                    f"v{version.number} cannot roll out on '{endpoint.name}': "
                    + "; ".join(f"{GATE_LABELS[c['gate']]}: {c['note']}" for c in failed)
                    + ".",
                    {"checks": checks},
                    status=409,
                )
            version_check_deployable(version=version, model=endpoint.model)
            now = timezone.now()
            rollout = Rollout.objects.create(
                endpoint=endpoint,
                version=version,
                state=RolloutState.PENDING_APPROVAL if pending_approval else RolloutState.RUNNING,
                steps=cleaned_steps,
                step=1,
                step_started_at=now,
                gates=resolved,
                preflight=checks,
                allow_signature_change=allow_signature_change,
                reason=reason,
                actor=actor.authenticated_user,
            )
            rollout.endpoint, rollout.version = endpoint, version
            if pending_approval:
                rollout_record(
                    actor=actor,
                    rollout=rollout,
                    action="rollout.request",
                    extra={"gates": resolved, "preflight": checks},
                )
                return rollout
            release = _rollout_release(rollout, actor=actor, kind="step", reason=_step_reason(rollout, "started"))
            rollout_record(
                actor=actor,
                rollout=rollout,
                action="rollout.start",
                extra={"release": release.number if release else None, "gates": resolved, "preflight": checks},
            )
    except IntegrityError as exc:
        # Another start committed between the check and the insert: the partial unique constraint caught it.
        active = rollout_active(endpoint=endpoint)
        if active is None:
            raise
        raise _active_conflict(active) from exc
    return rollout


def rollout_start_approved(*, actor: Actor, rollout: Rollout, why: str) -> Rollout:
    """Start a rollout that waited for approval: the first step's canary release, its bake clock from now.

    Refused (409) when the rollout no longer waits (a release aborted it) or its version can no longer deploy; the
    conditional UPDATE from `pending_approval` makes racing starts apply once. The caller holds a transaction, so a
    refusal leaves nothing half-done.
    """
    if rollout.state != RolloutState.PENDING_APPROVAL:
        raise ApplicationError(
            "rollout_state",
            f"Rollout {rollout.pk} is {rollout.state} ({rollout.outcome or 'no outcome'}); only a rollout waiting "
            "for approval can start.",
            {"state": rollout.state},
            status=409,
        )
    version_check_deployable(version=rollout.version, model=rollout.endpoint.model)
    result = _transition(
        rollout,
        to=RolloutState.RUNNING,
        next_step=1,
        now=timezone.now(),
        actor=actor,
        action="rollout.start",
        release_kind="step",
        why=why,
    )
    return _changed_or_conflict(rollout, result, "started")


def _step_reason(rollout: Rollout, why: str) -> str:
    text = f"rollout {rollout.pk} step {rollout.step}/{len(rollout.steps)}: v{rollout.version.number} at "
    return f"{text}{rollout.percent}% ({why})" + (f"; {rollout.reason}" if rollout.reason else "")


def _rollout_release(rollout: Rollout, *, actor: Actor | None, kind: str, reason: str) -> Release | None:
    """Append the release a rollout's change makes: `step` (canary at the current share), `promote`, or `remove`
    (the canary taken away; nothing when it is no longer live)."""
    version = rollout.version

    def build(current: Release) -> dict[str, Any] | None:
        if kind == "remove":
            if current.canary_id != version.pk:
                return None
            return {"primary": current.primary, "canary": None, "canary_percent": 0, "shadow": current.shadow}
        _versions_lock_unarchived(version)
        if kind == "promote":
            return {"primary": version, "canary": None, "canary_percent": 0, "shadow": current.shadow}
        share = rollout.percent
        return {"primary": current.primary, "canary": version, "canary_percent": share, "shadow": current.shadow}

    action = {"step": ReleaseAction.CANARY, "promote": ReleaseAction.PROMOTE, "remove": ReleaseAction.ROLLBACK}[kind]
    return _release_append(
        actor=actor,
        user=rollout.actor,
        endpoint=rollout.endpoint,
        action=action,
        reason=reason,
        build=build,
        audit_action=f"endpoint.rollout_{kind}",
        audit_extra={"rollout": rollout.pk, "step": rollout.step},
        rollout=rollout,
    )


def _history_write(rollout: Rollout, evaluations: dict[str, dict[str, Any]], gates: list[str] | None = None) -> None:
    RolloutEvaluation.objects.bulk_create(
        RolloutEvaluation(
            rollout_id=rollout.pk,
            step=rollout.step,
            gate=gate,
            status=result["status"],
            passed=result["passed"],
            value=result["value"],
            threshold=result["threshold"],
            window_seconds=result["window_seconds"],
            requests=result["requests"],
            note=result.get("note", "")[:200],
        )
        for gate, result in evaluations.items()
        if gates is None or gate in gates
    )


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 4)


def rollout_evaluate(
    *,
    gates: dict[str, Any],
    canary: Traffic,
    primary: Traffic,
    shadow: Traffic | None,
    drift_psi: float | None,
    window_seconds: float,
) -> dict[str, dict[str, Any]]:
    """Each live gate's evaluation `{status, passed, value, threshold, window_seconds, requests, note}`; gates that
    are off are left out. Below the minimum of canary requests every gate is `waiting` (passed None); a gate that
    has nothing to measure (no primary traffic, no comparison, no drift) is `skipped` and holds."""
    window = round(window_seconds, 1)
    minimum = gates.get("min_requests")
    waiting = minimum is not None and canary.requests < minimum
    results: dict[str, dict[str, Any]] = {}

    def put(gate: str, value: float | None, threshold: Any, requests: int, failed: bool | None, note: str = "") -> None:
        if failed is None:
            status = GateStatus.SKIPPED
        elif waiting:
            status = GateStatus.WAITING
        else:
            status = GateStatus.FAILED if failed else GateStatus.PASSED
        results[gate] = {
            "status": str(status),
            "passed": (not failed) if status in (GateStatus.PASSED, GateStatus.FAILED) else None,
            "value": value,
            "threshold": threshold,
            "window_seconds": window,
            "requests": requests,
            "note": note,
        }

    if minimum is not None:
        put("min_requests", canary.requests, minimum, canary.requests, False)
    canary_rate = _ratio(canary.errors, canary.requests) if canary.requests else None
    if (threshold := gates.get("error_rate")) is not None:
        failed = None if canary_rate is None else canary_rate > threshold
        put("error_rate", canary_rate, threshold, canary.requests, failed, "" if canary.requests else "no requests")
    if (factor := gates.get("error_rate_relative")) is not None:
        if canary_rate is None or not primary.requests:
            put("error_rate_relative", canary_rate, None, canary.requests, None, "no canary or primary requests")
        else:
            primary_rate = primary.errors / primary.requests
            bound = round(factor * primary_rate + ERROR_RATE_RELATIVE_SLACK, 4)
            note = f"primary {primary_rate:.4f} over {primary.requests} requests"
            put("error_rate_relative", canary_rate, bound, canary.requests, canary_rate > bound, note)
    if (threshold := gates.get("p95_ratio")) is not None:
        if canary.p95_ms is None or not primary.p95_ms:
            put("p95_ratio", None, threshold, canary.requests, None, "no canary or primary latency")
        else:
            ratio = _ratio(canary.p95_ms, primary.p95_ms)
            note = f"p95 {canary.p95_ms:.1f} ms vs {primary.p95_ms:.1f} ms"
            put("p95_ratio", ratio, threshold, canary.requests, ratio > threshold, note)
    if (threshold := gates.get("disagreement_rate")) is not None:
        compared = shadow if shadow is not None and shadow.requests else (canary if canary.disagreements else None)
        if compared is None:
            put("disagreement_rate", None, threshold, 0, None, "no shadow or comparison")
        else:
            rate = _ratio(compared.disagreements, compared.requests)
            who = "shadow" if compared is shadow else "canary"
            put("disagreement_rate", rate, threshold, compared.requests, rate > threshold, who)
    if (threshold := gates.get("drift_psi")) is not None:
        failed = None if drift_psi is None else drift_psi > threshold
        value = None if drift_psi is None else round(drift_psi, 4)
        put("drift_psi", value, threshold, canary.requests, failed, "" if value is not None else "no drift measured")
    return results


def _failure_text(gate: str, result: dict[str, Any]) -> str:
    return (
        f"{GATE_LABELS[gate]} {result['value']:g} > {result['threshold']:g} over {result['window_seconds']:g} s, "
        f"{result['requests']} requests"
    )


def rollout_judge(
    *,
    rollout_id: int,
    step: int,
    canary: Traffic,
    primary: Traffic,
    shadow: Traffic | None,
    drift_psi: float | None,
    now: datetime,
) -> Rollout | None:
    """Judge a running rollout's step on its traffic since the step started: store every gate's evaluation, then
    roll back on a failed gate, or move on (next step, or promote after the last) once the bake time has passed.

    Returns the rollout when it changed state or step, else None (also when it is no longer running at `step`:
    another judge, or a person, moved it first).
    """
    rollout = Rollout.objects.select_related("endpoint__team", "endpoint__model", "version", "actor").get(pk=rollout_id)
    if rollout.state != RolloutState.RUNNING or rollout.step != step:
        return None
    elapsed = max(0.0, (now - rollout.step_started_at).total_seconds())
    evaluations = rollout_evaluate(
        gates=rollout.gates, canary=canary, primary=primary, shadow=shadow, drift_psi=drift_psi, window_seconds=elapsed
    )
    failed = [gate for gate, result in evaluations.items() if result["status"] == GateStatus.FAILED]
    waiting = any(result["status"] == GateStatus.WAITING for result in evaluations.values())
    if failed:
        reason = f"rollout {rollout.pk} step {step}: " + "; ".join(_failure_text(g, evaluations[g]) for g in failed)
        return _transition(
            rollout,
            to=RolloutState.ROLLED_BACK,
            now=now,
            evaluations=evaluations,
            outcome=reason,
            actor=None,
            action="rollout.rollback",
            release_kind="remove",
        )
    if not waiting and elapsed >= rollout.bake_seconds:
        return _step_next(rollout, now=now, evaluations=evaluations, actor=None, why="gates held")
    # No change: the latest numbers for the page, and a history row only for a gate whose verdict changed.
    previous = rollout.evaluations or {}
    changed = [gate for gate, result in evaluations.items() if previous.get(gate, {}).get("status") != result["status"]]
    with transaction.atomic():
        if (
            Rollout.objects.filter(pk=rollout.pk, state=RolloutState.RUNNING, step=step).update(
                evaluations=evaluations, evaluated_at=now
            )
            == 1
            and changed
        ):
            _history_write(rollout, evaluations, changed)
    return None


def _step_next(
    rollout: Rollout, *, now: datetime, evaluations: dict[str, dict[str, Any]] | None, actor: Actor | None, why: str
) -> Rollout | None:
    total = len(rollout.steps)
    if rollout.step >= total:
        return _transition(
            rollout,
            to=RolloutState.SUCCEEDED,
            now=now,
            evaluations=evaluations,
            outcome=f"promoted after step {rollout.step}/{total} ({why})",
            actor=actor,
            action="rollout.succeed",
            release_kind="promote",
        )
    return _transition(
        rollout,
        to=rollout.state,
        next_step=rollout.step + 1,
        now=now,
        evaluations=evaluations,
        actor=actor,
        action="rollout.step",
        release_kind="step",
        why=why,
    )


def _transition(
    rollout: Rollout,
    *,
    to: str,
    now: datetime,
    action: str,
    actor: Actor | None,
    next_step: int | None = None,
    evaluations: dict[str, dict[str, Any]] | None = None,
    outcome: str = "",
    release_kind: str | None = None,
    why: str = "",
) -> Rollout | None:
    """Apply one change by conditional UPDATE on (id, state, step), then make its release: exactly one caller of
    several racing gets to apply it; the others get None."""
    state, step = rollout.state, rollout.step
    fields: dict[str, Any] = {"state": to, "outcome": outcome, "updated_at": now}
    if next_step is not None:
        fields["step"], fields["step_started_at"] = next_step, now
    if to in (RolloutState.SUCCEEDED, RolloutState.ROLLED_BACK, RolloutState.ABORTED):
        fields["finished_at"] = now
    if evaluations is not None:
        fields["evaluations"], fields["evaluated_at"] = evaluations, now
    with transaction.atomic():
        # The endpoint's lock before the rollout's row, in the order a manual release takes them (no deadlock).
        Endpoint.objects.select_for_update().filter(pk=rollout.endpoint_id).exists()
        if Rollout.objects.filter(pk=rollout.pk, state=state, step=step).update(**fields) != 1:
            return None
        if evaluations is not None:
            _history_write(rollout, evaluations)
        for name, value in fields.items():
            setattr(rollout, name, value)
        release = None
        if release_kind == "promote":
            release = _rollout_release(rollout, actor=actor, kind="promote", reason=_promote_reason(rollout))
        elif release_kind == "remove":
            release = _rollout_release(rollout, actor=actor, kind="remove", reason=outcome)
        elif release_kind == "step":
            release = _rollout_release(rollout, actor=actor, kind="step", reason=_step_reason(rollout, why))
        extra: dict[str, Any] = {"previous_state": state, "previous_step": step}
        if release_kind is not None:
            extra["release"] = release.number if release else None
        rollout_record(actor=actor, rollout=rollout, action=action, extra=extra)
    return rollout


def _promote_reason(rollout: Rollout) -> str:
    text = f"rollout {rollout.pk}: v{rollout.version.number} promoted after {len(rollout.steps)} step(s)"
    return text + (f"; {rollout.reason}" if rollout.reason else "")


def _refuse(rollout: Rollout, action: str, allowed: tuple[str, ...]) -> ApplicationError:
    return ApplicationError(
        "rollout_state",
        f"Rollout {rollout.pk} is {rollout.state}; only a {' or '.join(allowed)} rollout can be {action}.",
        {"state": rollout.state},
        status=409,
    )


def _changed_or_conflict(rollout: Rollout, result: Rollout | None, action: str) -> Rollout:
    if result is None:
        raise ApplicationError(
            "rollout_changed",
            f"Rollout {rollout.pk} changed while it was being {action}; reload it and try again.",
            status=409,
        )
    return result


def rollout_pause(*, actor: Actor, rollout: Rollout) -> Rollout:
    """Stop judging a running rollout; its canary keeps its share."""
    _require_change(actor, rollout.endpoint)
    if rollout.state != RolloutState.RUNNING:
        raise _refuse(rollout, "paused", (RolloutState.RUNNING,))
    result = _transition(rollout, to=RolloutState.PAUSED, now=timezone.now(), actor=actor, action="rollout.pause")
    return _changed_or_conflict(rollout, result, "paused")


def rollout_resume(*, actor: Actor, rollout: Rollout) -> Rollout:
    """Judge a paused rollout again, its step's bake clock started afresh."""
    _require_change(actor, rollout.endpoint)
    if rollout.state != RolloutState.PAUSED:
        raise _refuse(rollout, "resumed", (RolloutState.PAUSED,))
    # The same step again, from now: its traffic window and bake time start over.
    result = _transition(
        rollout,
        to=RolloutState.RUNNING,
        next_step=rollout.step,
        now=timezone.now(),
        actor=actor,
        action="rollout.resume",
    )
    return _changed_or_conflict(rollout, result, "resumed")


def rollout_advance(*, actor: Actor, rollout: Rollout) -> Rollout:
    """Move to the next step now, skipping the rest of the bake (or promote after the last step)."""
    _require_change(actor, rollout.endpoint)
    allowed = (RolloutState.RUNNING, RolloutState.PAUSED)
    if rollout.state not in allowed:
        raise _refuse(rollout, "advanced", allowed)
    who = actor.authenticated_user.get_username()
    result = _step_next(rollout, now=timezone.now(), evaluations=None, actor=actor, why=f"advanced by {who}")
    return _changed_or_conflict(rollout, result, "advanced")


def rollout_abort(*, actor: Actor, rollout: Rollout, reason: str = "") -> Rollout:
    """Stop a rollout and take its canary away (a release); the primary serves alone as before."""
    _require_change(actor, rollout.endpoint)
    allowed = (RolloutState.RUNNING, RolloutState.PAUSED)
    if rollout.state not in allowed:
        raise _refuse(rollout, "aborted", allowed)
    who = actor.authenticated_user.get_username()
    outcome = f"rollout {rollout.pk} aborted by {who} at step {rollout.step}" + (f": {reason}" if reason else "")
    result = _transition(
        rollout,
        to=RolloutState.ABORTED,
        now=timezone.now(),
        outcome=outcome,
        actor=actor,
        action="rollout.abort",
        release_kind="remove",
    )
    return _changed_or_conflict(rollout, result, "aborted")
