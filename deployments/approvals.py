"""Four-eyes approvals: on an endpoint that requires approval, a promote or a rollout is a change request that an
admin other than the requester approves (then it is applied) or rejects. Requests expire; rollbacks never wait.

Every decision is a conditional UPDATE from `pending`, so two admins approving at once apply the change once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from common.errors import ApplicationError
from deployments.choices import ChangeRequestKind, ChangeRequestState, RolloutState
from deployments.models import ChangeRequest, Endpoint, Release, Rollout
from deployments.rollouts import rollout_create, rollout_start_approved
from deployments.selectors import change_request_list
from deployments.services import change_request_record, release_promote, version_check_deployable
from registry.models import ModelVersion
from teams.choices import Action
from teams.permissions import Actor, actor_require

__all__ = [
    "change_request_approve",
    "change_request_reject",
    "change_requests_expire",
    "change_requests_pending",
    "release_promote_or_request",
    "rollout_create_or_request",
]


def _ttl() -> timedelta:
    return timedelta(hours=float(settings.MODELDECK_APPROVAL_TTL_HOURS))


def _pending_conflict(endpoint: Endpoint) -> ApplicationError:
    pending = ChangeRequest.objects.filter(endpoint=endpoint, state=ChangeRequestState.PENDING).first()
    number = pending.pk if pending else None
    return ApplicationError(
        "change_request_pending",
        f"'{endpoint.name}' already has change request {number} waiting for approval; approve, reject or withdraw "
        "it first.",
        {"change_request": number},
        status=409,
    )


def _request_create(
    *, actor: Actor, endpoint: Endpoint, kind: str, change: dict[str, Any], rollout: Rollout | None = None
) -> ChangeRequest:
    now = timezone.now()
    request = ChangeRequest.objects.create(
        team=endpoint.team,
        endpoint=endpoint,
        kind=kind,
        change=change,
        rollout=rollout,
        requested_by=actor.authenticated_user,
        requested_at=now,
        expires_at=now + _ttl(),
    )
    request.endpoint = endpoint
    change_request_record(actor=actor, request=request, action="change_request.create")
    return request


def _pending_guard(endpoint: Endpoint) -> None:
    change_requests_expire(endpoint=endpoint)
    if ChangeRequest.objects.filter(endpoint=endpoint, state=ChangeRequestState.PENDING).exists():
        raise _pending_conflict(endpoint)


def release_promote_or_request(
    *,
    actor: Actor,
    endpoint: Endpoint,
    version: ModelVersion,
    canary_percent: int | None = None,
    shadow_version: ModelVersion | None = None,
    clear_shadow: bool = False,
    allow_signature_change: bool = False,
    reason: str = "",
) -> Release | ChangeRequest:
    """Promote (see `release_promote`), or on an endpoint that requires approval ask for it: a change request any
    developer of the team may make, checked now as far as it can be (the version deploys), applied when approved."""
    if not endpoint.requires_approval:
        return release_promote(
            actor=actor,
            endpoint=endpoint,
            version=version,
            canary_percent=canary_percent,
            shadow_version=shadow_version,
            clear_shadow=clear_shadow,
            allow_signature_change=allow_signature_change,
            reason=reason,
        )
    actor_require(actor=actor, team=endpoint.team, action=Action.DEVELOP)
    version_check_deployable(version=version, model=endpoint.model)
    if shadow_version is not None:
        version_check_deployable(version=shadow_version, model=endpoint.model)
    if canary_percent is not None and not 1 <= canary_percent <= 99:
        raise ApplicationError(
            "invalid", "A canary takes 1 to 99 percent of traffic.", {"canary_percent": ["Between 1 and 99."]}
        )
    _pending_guard(endpoint)
    change = {
        "version": version.number,
        "canary_percent": canary_percent,
        "shadow_version": shadow_version.number if shadow_version else None,
        "clear_shadow": clear_shadow,
        "allow_signature_change": allow_signature_change,
        "reason": reason,
    }
    try:
        with transaction.atomic():
            return _request_create(actor=actor, endpoint=endpoint, kind=ChangeRequestKind.PROMOTE, change=change)
    except IntegrityError as exc:  # another request committed between the check and the insert
        raise _pending_conflict(endpoint) from exc


def rollout_create_or_request(
    *,
    actor: Actor,
    endpoint: Endpoint,
    version: ModelVersion,
    steps: list[dict[str, Any]],
    gates: dict[str, Any] | None = None,
    allow_signature_change: bool = False,
    reason: str = "",
) -> Rollout | ChangeRequest:
    """Start a rollout, or on an endpoint that requires approval create it waiting (`pending_approval`: no release,
    not judged) with a change request."""
    arguments: dict[str, Any] = {
        "actor": actor,
        "endpoint": endpoint,
        "version": version,
        "steps": steps,
        "gates": gates,
        "allow_signature_change": allow_signature_change,
        "reason": reason,
    }
    if not endpoint.requires_approval:
        return rollout_create(**arguments)
    _pending_guard(endpoint)
    change = {
        "version": version.number,
        "steps": steps,
        "gates": gates or {},
        "allow_signature_change": allow_signature_change,
        "reason": reason,
    }
    try:
        with transaction.atomic():
            rollout = rollout_create(**arguments, pending_approval=True)
            change["rollout"] = rollout.pk
            return _request_create(
                actor=actor, endpoint=endpoint, kind=ChangeRequestKind.ROLLOUT, change=change, rollout=rollout
            )
    except IntegrityError as exc:
        raise _pending_conflict(endpoint) from exc


def _expire(request: ChangeRequest, now: Any) -> bool:
    """Mark one pending request expired and abort its waiting rollout; False when it was decided meanwhile."""
    with transaction.atomic():
        if (
            ChangeRequest.objects.filter(pk=request.pk, state=ChangeRequestState.PENDING).update(
                state=ChangeRequestState.EXPIRED, decided_at=now, updated_at=now
            )
            != 1
        ):
            return False
        request.state, request.decided_at = ChangeRequestState.EXPIRED, now
        if request.rollout_id is not None:
            outcome = f"change request {request.pk} expired unapproved"
            Rollout.objects.filter(pk=request.rollout_id, state=RolloutState.PENDING_APPROVAL).update(
                state=RolloutState.ABORTED, outcome=outcome, finished_at=now, updated_at=now
            )
        change_request_record(actor=None, request=request, action="change_request.expire")
    return True


def change_requests_expire(*, endpoint: Endpoint | None = None, team_id: int | None = None) -> int:
    """Expire every pending request past its time (lazily before a read or a decision, and by beat each minute)."""
    now = timezone.now()
    due: QuerySet[ChangeRequest] = ChangeRequest.objects.filter(
        state=ChangeRequestState.PENDING, expires_at__lte=now
    ).select_related("endpoint__team", "requested_by", "decided_by")
    if endpoint is not None:
        due = due.filter(endpoint=endpoint)
    if team_id is not None:
        due = due.filter(team_id=team_id)
    return sum(_expire(request, now) for request in due)


def _decidable(actor: Actor, request: ChangeRequest, verb: str) -> None:
    """Refuse a decision on a request that is no longer pending; expire it (committed) when its time is up."""
    if request.state == ChangeRequestState.PENDING and request.expires_at <= timezone.now():
        _expire(request, timezone.now())
        request.refresh_from_db()
    if request.state == ChangeRequestState.EXPIRED:
        raise ApplicationError(
            "expired",
            f"Change request {request.pk} expired at {request.expires_at:%Y-%m-%d %H:%M} UTC unapproved; ask again.",
            {"state": request.state},
            status=409,
        )
    if request.state != ChangeRequestState.PENDING:
        raise ApplicationError(
            "change_request_state",
            f"Change request {request.pk} is already {request.state}; only a pending one can be {verb}.",
            {"state": request.state},
            status=409,
        )


def _decide(actor: Actor, request: ChangeRequest, state: str, reason: str, now: Any) -> bool:
    return (
        ChangeRequest.objects.filter(pk=request.pk, state=ChangeRequestState.PENDING, expires_at__gt=now).update(
            state=state,
            decided_by=actor.authenticated_user,
            decided_at=now,
            decision_reason=reason,
            updated_at=now,
        )
        == 1
    )


def _changed(request: ChangeRequest) -> ApplicationError:
    request.refresh_from_db()
    return ApplicationError(
        "change_request_state",
        f"Change request {request.pk} was {request.state} meanwhile.",
        {"state": request.state},
        status=409,
    )


def _apply(actor: Actor, request: ChangeRequest, why: str) -> dict[str, Any]:
    endpoint = Endpoint.objects.select_related("team", "model").get(pk=request.endpoint_id)
    change = request.change
    if request.kind == ChangeRequestKind.ROLLOUT:
        if request.rollout_id is None:
            raise ApplicationError("rollout_state", "The rollout of this request is gone.", status=409)
        rollout = Rollout.objects.select_related("endpoint__team", "endpoint__model", "version", "actor").get(
            pk=request.rollout_id
        )
        started = rollout_start_approved(actor=actor, rollout=rollout, why=why)
        return {"rollout": started.pk}
    version = endpoint.model.versions.get(number=change["version"])
    shadow = endpoint.model.versions.get(number=change["shadow_version"]) if change.get("shadow_version") else None
    release = release_promote(
        actor=actor,
        endpoint=endpoint,
        version=version,
        canary_percent=change.get("canary_percent"),
        shadow_version=shadow,
        clear_shadow=bool(change.get("clear_shadow")),
        allow_signature_change=bool(change.get("allow_signature_change")),
        reason=why + (f"; asked: {change['reason']}" if change.get("reason") else ""),
        approved=True,
    )
    return {"release": release.number}


def change_request_approve(*, actor: Actor, request: ChangeRequest, reason: str) -> ChangeRequest:
    """Approve a pending request as an admin other than the requester, and apply it: the release (promote) or the
    rollout's first step. When applying fails (the version was archived, the rollout aborted), the request is
    `failed` with the error and nothing else changes."""
    actor_require(actor=actor, team=request.team, action=Action.MANAGE)
    if request.requested_by_id == actor.user_id:
        raise ApplicationError(
            "self_approval",
            f"You asked for change request {request.pk}: another admin must approve it (four eyes). You may "
            "withdraw it instead.",
            {"change_request": request.pk},
            status=403,
        )
    _decidable(actor, request, "approved")
    reason = reason.strip()
    who = actor.authenticated_user.get_username()
    now = timezone.now()
    try:
        with transaction.atomic():
            if not _decide(actor, request, ChangeRequestState.APPROVED, reason, now):
                raise _changed(request)
            result = _apply(actor, request, f"approved by {who}" + (f": {reason}" if reason else ""))
            ChangeRequest.objects.filter(pk=request.pk).update(result=result)
            request.refresh_from_db()
            change_request_record(actor=actor, request=request, action="change_request.approve")
    except ApplicationError as exc:
        if exc.code == "change_request_state":
            raise
        return _fail(actor, request, reason, exc.message, now)
    return request


def _fail(actor: Actor, request: ChangeRequest, reason: str, error: str, now: Any) -> ChangeRequest:
    with transaction.atomic():
        if not _decide(actor, request, ChangeRequestState.FAILED, reason, now):
            raise _changed(request)
        ChangeRequest.objects.filter(pk=request.pk).update(result={"error": error})
        if request.rollout_id is not None:
            Rollout.objects.filter(pk=request.rollout_id, state=RolloutState.PENDING_APPROVAL).update(
                state=RolloutState.ABORTED, outcome=f"approved but failed: {error}", finished_at=now, updated_at=now
            )
        request.refresh_from_db()
        change_request_record(actor=actor, request=request, action="change_request.fail")
    return request


def change_request_reject(*, actor: Actor, request: ChangeRequest, reason: str) -> ChangeRequest:
    """Reject a pending request with a reason (an admin other than the requester), or withdraw one's own (any
    role); a waiting rollout is aborted."""
    own = request.requested_by_id == actor.user_id
    actor_require(actor=actor, team=request.team, action=Action.VIEW if own else Action.MANAGE)
    _decidable(actor, request, "rejected")
    reason = reason.strip() or ("withdrawn" if own else "")
    if not reason:
        raise ApplicationError("invalid", "Say why you reject it.", {"reason": ["Required."]})
    now = timezone.now()
    with transaction.atomic():
        if not _decide(actor, request, ChangeRequestState.REJECTED, reason, now):
            raise _changed(request)
        if request.rollout_id is not None:
            who = actor.authenticated_user.get_username()
            Rollout.objects.filter(pk=request.rollout_id, state=RolloutState.PENDING_APPROVAL).update(
                state=RolloutState.ABORTED,
                outcome=f"change request {request.pk} rejected by {who}: {reason}",
                finished_at=now,
                updated_at=now,
            )
        request.refresh_from_db()
        change_request_record(actor=actor, request=request, action="change_request.reject")
    return request


def change_requests_pending(*, team_id: int) -> list[ChangeRequest]:
    """The team's pending change requests, next to expire first, after marking those past their time (the team
    dashboard's card)."""
    change_requests_expire(team_id=team_id)
    return list(change_request_list(team_id=team_id, state=ChangeRequestState.PENDING))
