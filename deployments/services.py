"""The control plane: create endpoints, promote, canary, shadow and roll back, each as a new release."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from common.errors import ApplicationError
from common.events import team_event_publish
from deployments.choices import ROLLOUT_ACTIVE_STATES, ChangeRequestState, ReleaseAction, RolloutState
from deployments.compatibility import difference_text
from deployments.models import ChangeRequest, Endpoint, Release, Rollout
from deployments.selectors import (
    RELEASE_STAMP_KEY,
    endpoint_change_action,
    release_rollback_plan,
    version_signature_differences,
)
from deployments.signals import releases_changed
from registry.choices import VersionStatus
from registry.models import ModelVersion, RegisteredModel
from registry.selectors import version_archived_reason, version_not_servable_reason, version_parity_blocks
from teams.choices import Action, Role
from teams.models import Membership
from teams.permissions import Actor, actor_require
from teams.services import audit_record

logger = logging.getLogger(__name__)


# While the cache is away, a failed stamp bump is tried again this often (serving follows within this of its return).
STAMP_RETRY_SECONDS = 0.25
_stamp_retry_lock = threading.Lock()
_stamp_retry_thread: threading.Thread | None = None
_stamp_failures = 0


def release_stamp_bump() -> None:
    """Tell every serving process, on commit, that releases or endpoint settings changed (they poll this stamp).

    The commit is the truth: a cache that is away never fails the write that was made. This process follows at
    once (the signal), the bump is retried until the cache is back, and serving processes re-read the releases
    from the database whenever they could not read the stamp (serving.router).
    """

    def announce() -> None:
        releases_changed.send(sender=Release)
        if not _stamp_set():
            logger.warning("the release stamp could not be bumped (cache away); retrying until it is back")
            _stamp_retry_start()

    transaction.on_commit(announce)


def _stamp_set() -> bool:
    try:
        cache.set(RELEASE_STAMP_KEY, time.time_ns(), timeout=None)
    except Exception:  # noqa: BLE001  (any cache backend error: the caller says so and retries)
        return False
    return True


def _stamp_retry_start() -> None:
    global _stamp_retry_thread, _stamp_failures
    with _stamp_retry_lock:
        _stamp_failures += 1
        # One retrying thread per process is enough: one bump that lands announces every change before it.
        if _stamp_retry_thread is None:
            _stamp_retry_thread = threading.Thread(target=_stamp_retry, name="release-stamp-retry", daemon=True)
            _stamp_retry_thread.start()


def _stamp_retry() -> None:
    global _stamp_retry_thread
    while True:
        time.sleep(STAMP_RETRY_SECONDS)
        with _stamp_retry_lock:
            failures = _stamp_failures
        if not _stamp_set():
            continue
        with _stamp_retry_lock:
            # A bump that failed while this one was on its way is not covered by it: go round again.
            if failures == _stamp_failures:
                _stamp_retry_thread = None
                logger.info("the release stamp is bumped again (cache back)")
                return


def version_check_deployable(*, version: ModelVersion, model: RegisteredModel) -> None:
    """Refuse a version that is not this model's, archived, not ready, not servable, or failed parity without an
    override."""
    if version.model_id != model.pk:
        raise ApplicationError(
            "wrong_model", f"v{version.number} belongs to '{version.model.name}', not to '{model.name}'.", status=422
        )
    archived = version_archived_reason(version)
    if archived:
        raise ApplicationError("archived", archived, {"version": version.number}, status=409)
    if version.status != VersionStatus.READY:
        raise ApplicationError(
            "version_not_ready", f"v{version.number} is {version.status}; only ready versions deploy.", status=409
        )
    not_servable = version_not_servable_reason(version)
    if not_servable:
        raise ApplicationError("not_servable", not_servable, status=422)
    if version_parity_blocks(version):
        raise ApplicationError(
            "parity_failed",
            f"v{version.number} failed its parity check ({version.parity.get('reason', 'no reason recorded')}); "
            "an admin can accept it with a reason on the version's page first.",
            status=409,
        )


def _versions_lock_unarchived(*versions: ModelVersion | None) -> None:
    """Lock the rows of the versions a release is about to serve and refuse an archived one, inside the release's
    transaction: an archive that committed first is seen here, and one that comes after waits for this lock, then
    finds the version live and refuses (registry.services.archive)."""
    for version in versions:
        if version is None:
            continue
        # The version's row alone (model_archive locks the model, then these): archiving a model archives its versions.
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        archived = version_archived_reason(locked)
        if archived:
            raise ApplicationError("archived", archived, {"version": version.number}, status=409)


def _require_change(actor: Actor, endpoint: Endpoint) -> None:
    actor_require(actor=actor, team=endpoint.team, action=endpoint_change_action(endpoint))


def endpoint_create(
    *,
    actor: Actor,
    model: RegisteredModel,
    name: str,
    version: ModelVersion,
    protected: bool = False,
    public: bool = False,
    reason: str = "",
) -> Endpoint:
    """Create an endpoint for a model, serving `version` from its first release."""
    team = model.team
    actor_require(actor=actor, team=team, action=Action.CHANGE_PROTECTED if protected else Action.DEVELOP)
    version_check_deployable(version=version, model=model)
    endpoint = Endpoint(name=name, team=team, model=model, protected=protected, public=public)
    endpoint.created_by = actor.authenticated_user
    try:
        endpoint.full_clean(exclude=["team", "model", "created_by"], validate_unique=False)
    except ValidationError as exc:
        raise ApplicationError("invalid", "Invalid endpoint.", exc.message_dict) from exc
    try:
        with transaction.atomic():
            _versions_lock_unarchived(version)
            endpoint.save()
            release = Release.objects.create(
                endpoint=endpoint,
                number=1,
                action=ReleaseAction.CREATE,
                primary=version,
                actor=endpoint.created_by,
                reason=reason,
            )
            _audit(actor, release, "endpoint.create", {"protected": protected, "public": public})
            release_stamp_bump()
    except IntegrityError as exc:
        # Endpoint names are global: say so without telling which team holds it.
        raise ApplicationError("already_exists", f"The endpoint name '{name}' is taken.", status=409) from exc
    return endpoint


def _audit(actor: Actor | None, release: Release, action: str, extra: dict[str, Any] | None = None) -> None:
    data = {
        "endpoint": release.endpoint.name,
        "release": release.number,
        "primary": release.primary.number,
        "canary": release.canary.number if release.canary else None,
        "canary_percent": release.canary_percent,
        "shadow": release.shadow.number if release.shadow else None,
        "reason": release.reason,
        "by": release.by,
    }
    audit_record(
        team=release.endpoint.team, actor=actor, action=action, target=release.endpoint, data={**data, **(extra or {})}
    )
    event = {**data, "action": release.action}
    team = release.endpoint.team.slug
    transaction.on_commit(lambda: _announce(team, event))


def _announce(team: str, event: dict[str, Any]) -> None:
    """Tell the team's live stream about a committed release (dashboards add its marker at once)."""
    try:
        team_event_publish(team=team, kind="release", data=event)
    except Exception:  # the release is made; a stream that is away only costs the live notice
        logger.warning("release of %s not announced on the team stream", event["endpoint"], exc_info=True)


def _new_release(
    *,
    actor: Actor,
    endpoint: Endpoint,
    action: str,
    reason: str,
    build: Callable[[Release], dict[str, Any]],
    audit_extra: dict[str, Any] | None = None,
) -> Release:
    """Append the next release on behalf of a user who may change this endpoint."""
    _require_change(actor, endpoint)
    release = _release_append(
        actor=actor,
        user=actor.authenticated_user,
        endpoint=endpoint,
        action=action,
        reason=reason,
        build=build,
        audit_extra=audit_extra,
    )
    assert release is not None  # `build` never declines here
    return release


def _release_append(
    *,
    actor: Actor | None,
    user: User | None,
    endpoint: Endpoint,
    action: str,
    reason: str,
    build: Callable[[Release], dict[str, Any] | None],
    audit_action: str = "",
    audit_extra: dict[str, Any] | None = None,
    rule_name: str = "",
    rollout: Rollout | None = None,
) -> Release | None:
    """Lock the endpoint, read its live release, and append the next one (promotes serialize, never interleave).

    `build` returns the new release's versions, or None to append nothing (the live release is not the expected one).
    It may add to `audit_extra` what it learned under the lock; the audit record is written after it ran.
    A release that is not the step of a rollout (`rollout`) aborts the endpoint's active rollout: whoever changes
    the release by hand takes the endpoint over.
    """
    with transaction.atomic():
        Endpoint.objects.select_for_update().filter(pk=endpoint.pk).exists()
        current = endpoint.releases.select_related("primary", "canary", "shadow").order_by("-number").first()
        assert current is not None  # every endpoint is created with release 1
        fields = build(current)
        if fields is None:
            return None
        release = Release.objects.create(
            endpoint=endpoint,
            number=current.number + 1,
            action=action,
            actor=user,
            reason=reason,
            rule_name=rule_name,
            **fields,
        )
        _audit(
            actor,
            release,
            audit_action or f"endpoint.{action}",
            {"previous_release": current.number, **(audit_extra or {})},
        )
        _rollouts_abort_for_release(actor=actor, release=release, keep=rollout)
        release_stamp_bump()
    return release


def rollout_record(*, actor: Actor | None, rollout: Rollout, action: str, extra: dict[str, Any] | None = None) -> None:
    """Audit a rollout's change and announce it on the team's stream (kind "rollout") once it commits."""
    data = {
        "endpoint": rollout.endpoint.name,
        "rollout": rollout.pk,
        "version": rollout.version.number,
        "state": rollout.state,
        "step": rollout.step,
        "steps": len(rollout.steps),
        "percent": rollout.percent,
        "outcome": rollout.outcome,
        **(extra or {}),
    }
    audit_record(team=rollout.endpoint.team, actor=actor, action=action, target=rollout, data=data)
    team = rollout.endpoint.team.slug
    event = {**data, "action": action}

    def announce() -> None:
        try:
            team_event_publish(team=team, kind="rollout", data=event)
        except Exception:  # the change is made; a stream that is away only costs the live notice
            logger.warning("rollout %s not announced on the team stream", event["rollout"], exc_info=True)

    transaction.on_commit(announce)


def _rollouts_abort_for_release(*, actor: Actor | None, release: Release, keep: Rollout | None) -> None:
    """Abort the endpoint's active rollout (not `keep`): a release made beside it takes the endpoint over."""
    active = Rollout.objects.filter(endpoint_id=release.endpoint_id, state__in=ROLLOUT_ACTIVE_STATES)
    if keep is not None:
        active = active.exclude(pk=keep.pk)
    made_by = f"automatic rollback (rule {release.rule_name})" if release.rule_name else "manual release"
    outcome = f"{made_by} #{release.number}"
    for rollout in active.select_related("endpoint__team", "version"):
        # Conditional on its state: a judge that moved it meanwhile waits on the endpoint's lock held here.
        if (
            Rollout.objects.filter(pk=rollout.pk, state=rollout.state).update(
                state=RolloutState.ABORTED, outcome=outcome, finished_at=timezone.now(), updated_at=timezone.now()
            )
            != 1
        ):
            continue
        rollout.state, rollout.outcome = RolloutState.ABORTED, outcome
        rollout_record(actor=actor, rollout=rollout, action="rollout.abort", extra={"release": release.number})
        _change_requests_fail_for_rollout(
            actor=actor, rollout=rollout, error=f"rollout {rollout.pk} aborted by {outcome}"
        )


def _change_requests_fail_for_rollout(*, actor: Actor | None, rollout: Rollout, error: str) -> None:
    """A rollout waiting for approval that a release aborted can no longer start: its change request fails."""
    for request in ChangeRequest.objects.filter(rollout=rollout, state=ChangeRequestState.PENDING):
        if (
            ChangeRequest.objects.filter(pk=request.pk, state=ChangeRequestState.PENDING).update(
                state=ChangeRequestState.FAILED, result={"error": error}, decided_at=timezone.now()
            )
            != 1
        ):
            continue
        request.state, request.result = ChangeRequestState.FAILED, {"error": error}
        request.endpoint = rollout.endpoint
        change_request_record(actor=actor, request=request, action="change_request.fail")


def change_request_record(*, actor: Actor | None, request: ChangeRequest, action: str) -> None:
    """Audit a change request's change and announce it on the team's stream (kind "approval") once it commits."""
    data = {
        "id": request.pk,
        "endpoint": request.endpoint.name,
        "kind": request.kind,
        "state": request.state,
        "version": request.version_number,
        "requested_by": request.requested_by.get_username() if request.requested_by else None,
        "decided_by": request.decided_by.get_username() if request.decided_by else None,
    }
    audit_record(
        team=request.endpoint.team,
        actor=actor,
        action=action,
        target=request,
        data={**data, "change": request.change, "reason": request.decision_reason, "result": request.result},
    )
    team = request.endpoint.team.slug

    def announce() -> None:
        try:
            team_event_publish(team=team, kind="approval", data={**data, "action": action})
        except Exception:  # the change is made; a stream that is away only costs the live notice
            logger.warning("change request %s not announced on the team stream", data["id"], exc_info=True)

    transaction.on_commit(announce)


ENDPOINT_SETTINGS = ("public", "max_batch_size", "max_queue_delay_ms")


def _approvals_check(endpoint: Endpoint, changes: dict[str, Any]) -> None:
    """Refuse to require approval where nobody could give it: an unprotected endpoint, or a team with one admin."""
    protected = changes.get("protected", endpoint.protected)
    requires = changes.get("requires_approval", endpoint.requires_approval)
    if not requires:
        return
    if not protected:
        raise ApplicationError(
            "not_protected",
            f"Approvals guard protected endpoints: protect '{endpoint.name}' first (or turn approvals off before "
            "unprotecting it).",
            status=409,
        )
    if changes.get("requires_approval") and not endpoint.requires_approval:
        admins = list(
            Membership.objects.filter(team=endpoint.team, role=Role.ADMIN)
            .order_by("user__username")
            .values_list("user__username", flat=True)
        )
        if len(admins) < 2:
            who = f"one ({admins[0]})" if admins else "none"
            raise ApplicationError(
                "second_admin_needed",
                f"Approvals need a second admin: {endpoint.team.slug} has {who}; add one under Settings → Members "
                "first.",
                {"admins": admins},
                status=409,
            )


def endpoint_update(*, actor: Actor, endpoint: Endpoint, **changes: Any) -> Endpoint:
    """Change an endpoint's serving settings (public, dynamic batching); protected and requires_approval need an
    admin to change, and approvals a second admin to give them."""
    unknown = set(changes) - {*ENDPOINT_SETTINGS, "protected", "requires_approval"}
    if unknown:
        raise ApplicationError("invalid", f"Cannot change {', '.join(sorted(unknown))}.")
    if "protected" in changes or "requires_approval" in changes or endpoint.protected:
        actor_require(actor=actor, team=endpoint.team, action=Action.CHANGE_PROTECTED)
    else:
        _require_change(actor, endpoint)
    with transaction.atomic():
        locked = Endpoint.objects.select_for_update().select_related("team", "model").get(pk=endpoint.pk)
        _approvals_check(locked, changes)
        before = {name: getattr(locked, name) for name in changes}
        for name, value in changes.items():
            setattr(locked, name, value)
        try:
            locked.full_clean(exclude=["team", "model", "created_by", "name"], validate_unique=False)
        except ValidationError as exc:
            raise ApplicationError("invalid", "Invalid endpoint settings.", exc.message_dict) from exc
        locked.save(update_fields=[*changes, "updated_at"])
        audit_record(
            team=locked.team,
            actor=actor,
            action="endpoint.update",
            target=locked,
            data={"endpoint": locked.name, "before": before, "after": changes},
        )
        release_stamp_bump()
    return locked


def endpoint_delete(*, actor: Actor, endpoint: Endpoint, confirm: str) -> None:
    """Delete an endpoint: every web and gRPC process stops serving it within a second (its name answers 404), and
    its releases, alert rules, alerts and metric history go with it; the model's versions stay. Refused unless
    `confirm` repeats the endpoint's name (a deletion cannot be undone); audited with what it served."""
    _require_change(actor, endpoint)
    if confirm != endpoint.name:
        raise ApplicationError(
            "confirmation_required",
            f"Deleting '{endpoint.name}' stops serving it at once: its callers get 404 from then on. To delete it, "
            f"confirm with its name ('{endpoint.name}').",
            {"confirm": endpoint.name},
            status=409,
        )
    with transaction.atomic():
        locked = Endpoint.objects.select_for_update().select_related("team", "model").get(pk=endpoint.pk)
        current = locked.releases.order_by("-number").select_related("primary", "canary", "shadow").first()
        data = {
            "endpoint": locked.name,
            "model": locked.model.name,
            "releases": locked.releases.count(),
            "primary": current.primary.number if current else None,
            "canary": current.canary.number if current and current.canary else None,
        }
        team = locked.team
        locked.delete()
        audit_record(team=team, actor=actor, action="endpoint.delete", data=data)
        release_stamp_bump()
    event = {**data, "action": "delete"}
    transaction.on_commit(lambda: _announce(team.slug, event))


def _signature_changes(current: Release, candidates: list[tuple[ModelVersion, str]]) -> list[dict[str, Any]]:
    """Each way the candidates (version, role) differ from the live primary's signature, naming the candidate."""
    return [
        {"candidate": version.number, "role": role, **difference}
        for version, role in candidates
        for difference in version_signature_differences(primary=current.primary, version=version)
    ]


def _signature_mismatch(endpoint: Endpoint, current: Release, changes: list[dict[str, Any]]) -> ApplicationError:
    parts: list[str] = []
    for number, role in dict.fromkeys((c["candidate"], c["role"]) for c in changes):
        texts = "; ".join(difference_text(c) for c in changes if (c["candidate"], c["role"]) == (number, role))
        who = f"shadow v{number}" if role == "shadow" else f"v{number}"
        parts.append(f"{who}'s inputs or outputs differ from the primary v{current.primary.number}'s: {texts}")
    return ApplicationError(
        "signature_mismatch",
        f"{'. '.join(parts)}. A release never changes the contract of '{endpoint.name}' silently: "
        "allow the signature change to release it anyway.",
        {"primary": current.primary.number, "differences": changes},
        status=409,
    )


def release_promote(
    *,
    actor: Actor,
    endpoint: Endpoint,
    version: ModelVersion,
    canary_percent: int | None = None,
    shadow_version: ModelVersion | None = None,
    clear_shadow: bool = False,
    allow_signature_change: bool = False,
    reason: str = "",
    approved: bool = False,
) -> Release:
    """Make `version` the primary, or with `canary_percent` send it that share of traffic beside the primary.

    A shadow version, when given, receives a copy of the traffic; otherwise the live shadow is kept unless
    `clear_shadow` says to drop it. A version (or shadow) whose signature differs from the live primary's is refused
    (409 `signature_mismatch`, listing the differences) unless `allow_signature_change`; an allowed change is audited.
    Not checked again: the primary itself, and a canary or shadow that is already live in that role (a canary's
    share moving step by step was allowed when it started).

    On an endpoint that requires approval only an approved change request releases (`approved`); the API and pages
    ask deployments.approvals, which makes a change request instead.
    """
    if endpoint.requires_approval and not approved:
        raise ApplicationError(
            "approval_required",
            f"'{endpoint.name}' requires approval: a promote there is a change request another admin approves.",
            status=409,
        )
    version_check_deployable(version=version, model=endpoint.model)
    if shadow_version is not None:
        version_check_deployable(version=shadow_version, model=endpoint.model)
    if canary_percent is not None and not 1 <= canary_percent <= 99:
        raise ApplicationError(
            "invalid",
            "A canary takes 1 to 99 percent of traffic; promote without one to move it all.",
            {"canary_percent": ["Between 1 and 99."]},
        )
    audit_extra: dict[str, Any] = {}

    def build(current: Release) -> dict[str, Any]:
        _versions_lock_unarchived(version, shadow_version)
        shadow = shadow_version or (None if clear_shadow else current.shadow)
        if canary_percent is not None and version.pk == current.primary_id:
            raise ApplicationError("invalid", f"v{version.number} is already the primary; it cannot be its own canary.")
        # Compared with the primary read under the endpoint's lock: a promote that lands first changes the contract.
        candidates: list[tuple[ModelVersion, str]] = []
        if canary_percent is not None and version.pk != current.canary_id:
            candidates.append((version, "canary"))
        elif canary_percent is None and version.pk != current.primary_id:
            candidates.append((version, "primary"))
        if shadow_version is not None and shadow_version.pk not in (current.shadow_id, current.primary_id):
            candidates.append((shadow_version, "shadow"))
        changes = _signature_changes(current, candidates)
        if changes and not allow_signature_change:
            raise _signature_mismatch(endpoint, current, changes)
        if changes:
            audit_extra["signature_change"] = changes
        if canary_percent is not None:
            return {"primary": current.primary, "canary": version, "canary_percent": canary_percent, "shadow": shadow}
        return {"primary": version, "canary": None, "canary_percent": 0, "shadow": shadow}

    action = ReleaseAction.CANARY if canary_percent is not None else ReleaseAction.PROMOTE
    return _new_release(
        actor=actor, endpoint=endpoint, action=action, reason=reason, build=build, audit_extra=audit_extra
    )


def _rollback_fields(endpoint: Endpoint, current: Release) -> dict[str, Any]:
    plan = release_rollback_plan(endpoint=endpoint, current=current)
    if plan is None:
        raise ApplicationError(
            "nothing_to_roll_back",
            f"'{endpoint.name}' has nothing to roll back: release {current.number} serves v{current.primary.number} "
            "alone, with no canary or shadow, and no earlier release served another primary.",
            status=409,
        )
    return {"primary": plan.primary, "canary": None, "canary_percent": 0, "shadow": plan.shadow}


def release_rollback(*, actor: Actor, endpoint: Endpoint, reason: str = "") -> Release:
    """Return to the last known-good state, as a new release (history stays linear).

    With a canary live, remove it (primary and shadow stay). Otherwise serve the primary of the newest earlier release
    whose primary differs from the live one, with no canary and no shadow (so a second rollback undoes the first);
    with no such release, remove a live shadow. Never refused for signatures: it is the way back.
    """

    def build(current: Release) -> dict[str, Any]:
        return _rollback_fields(endpoint, current)

    return _new_release(actor=actor, endpoint=endpoint, action=ReleaseAction.ROLLBACK, reason=reason, build=build)


def release_rollback_automatic(
    *, endpoint: Endpoint, rule: str, reason: str, evidence: dict[str, Any]
) -> Release | None:
    """Roll back the release an alert rule caught, as the system; None when that release is no longer live.

    The same rule as `release_rollback`; the release records the rule's name (`rule`), which history shows as
    "automatic (rule NAME)" even after the rule is renamed or deleted. `evidence["release"]` names the release the
    rule judged. Under the endpoint's row lock, a release that is no longer live (another web process rolled it back
    first, or someone promoted since) is left alone, so processes that see the same bad canary at once roll it back
    exactly once.
    """
    judged = evidence["release"]

    def build(current: Release) -> dict[str, Any] | None:
        return _rollback_fields(endpoint, current) if current.number == judged else None

    return _release_append(
        actor=None,
        user=None,
        endpoint=endpoint,
        action=ReleaseAction.ROLLBACK,
        reason=reason,
        build=build,
        audit_action="endpoint.auto_rollback",
        audit_extra={"evidence": evidence},
        rule_name=rule,
    )
