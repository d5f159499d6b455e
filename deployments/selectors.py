"""Reads of the control plane, through the permission layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db.models import Case, F, OuterRef, QuerySet, Subquery, When

from common.errors import NotFoundError
from deployments.choices import ROLLOUT_ACTIVE_STATES, RolloutState
from deployments.compatibility import signature_differences
from deployments.models import ChangeRequest, Endpoint, Release, Rollout
from registry.models import ModelVersion
from runtimes.tensors import Signature
from teams.choices import Action
from teams.models import Team
from teams.permissions import Actor, actor_can
from teams.selectors import team_list_for_actor


def endpoint_change_action(endpoint: Endpoint) -> str:
    """What changing an endpoint needs (releases, settings, alert rules, deletion): an admin for a protected one."""
    return Action.CHANGE_PROTECTED if endpoint.protected else Action.DEVELOP


# Bumped on commit by every change a serving process must learn of (see services.release_stamp_bump).
RELEASE_STAMP_KEY = "deployments:release-stamp"


def release_stamp() -> Any:
    """The stamp serving processes poll: when it changes, they re-read the live releases."""
    return cache.get(RELEASE_STAMP_KEY)


def release_live_list() -> QuerySet[Release]:
    """The live (newest) release of every endpoint, with its endpoint and versions, in one query."""
    newest = Release.objects.filter(endpoint=OuterRef("endpoint")).order_by("-number").values("number")[:1]
    return Release.objects.filter(number=Subquery(newest)).select_related("endpoint", "primary", "canary", "shadow")


def release_live_list_for_team(*, team: Team) -> QuerySet[Release]:
    """The team's endpoints by name, each as its live release (endpoint, model and versions loaded), in one query."""
    return release_live_list().filter(endpoint__team=team).select_related("endpoint__model").order_by("endpoint__name")


def version_recent_list(*, team: Team) -> QuerySet[ModelVersion]:
    """The team's versions, newest first (uploads and the conversions made from them), for its dashboard; archived
    versions, and those of archived models, left out as in the registry's own lists."""
    return (
        ModelVersion.objects.filter(model__team=team, archived_at__isnull=True, model__archived_at__isnull=True)
        .select_related("model", "parent")
        .order_by("-created_at", "-id")
    )


def endpoint_list(*, actor: Actor) -> QuerySet[Endpoint]:
    return (
        Endpoint.objects.filter(team__in=team_list_for_actor(actor=actor).values("pk"))
        .select_related("team", "model")
        .order_by("name")
    )


def endpoint_get(*, actor: Actor, name: str) -> Endpoint:
    """Return the endpoint if the actor's team owns it; 404 otherwise, exactly as for a name that does not exist."""
    endpoint = Endpoint.objects.select_related("team", "model__team").filter(name=name).first()
    if endpoint is None or not actor_can(actor=actor, team=endpoint.team, action=Action.VIEW):
        raise NotFoundError(f"Endpoint '{name}' not found.")
    return endpoint


def release_list(*, endpoint: Endpoint) -> QuerySet[Release]:
    return endpoint.releases.select_related("primary", "canary", "shadow", "actor").order_by("-number")


def release_current(*, endpoint: Endpoint) -> Release:
    release = release_list(endpoint=endpoint).first()
    assert release is not None
    return release


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback of the live release serves, and what it takes away ("canary", "primary" or "shadow")."""

    primary: ModelVersion
    shadow: ModelVersion | None
    removes: str


def release_rollback_plan(*, endpoint: Endpoint, current: Release) -> RollbackPlan | None:
    """What rolling back `current` (the live release) leads to; None when there is nothing to roll back.

    A live canary is removed, keeping primary and shadow. Otherwise the primary of the newest earlier release whose
    primary differs from the live one comes back, alone: looking past releases with the same primary (canaries of
    it, rollbacks to it) is what lets a second rollback undo the first instead of returning to where it is. With no
    such release, a live shadow is removed.
    """
    if current.canary_id is not None:
        return RollbackPlan(primary=current.primary, shadow=current.shadow, removes="canary")
    earlier = (
        endpoint.releases.filter(number__lt=current.number)
        .exclude(primary_id=current.primary_id)
        .select_related("primary")
        .order_by("-number")
        .first()
    )
    if earlier is not None:
        return RollbackPlan(primary=earlier.primary, shadow=None, removes="primary")
    if current.shadow_id is not None:
        return RollbackPlan(primary=current.primary, shadow=None, removes="shadow")
    return None


def version_signature_differences(*, primary: ModelVersion, version: ModelVersion) -> list[dict[str, Any]]:
    """How `version`'s inputs and outputs differ from those of `primary` (see deployments.compatibility)."""
    return signature_differences(
        Signature.from_dict(primary.signature or {}), Signature.from_dict(version.signature or {})
    )


def _rollouts() -> QuerySet[Rollout]:
    return Rollout.objects.select_related("endpoint__team", "endpoint__model", "version", "actor")


def rollouts_running() -> list[Rollout]:
    """Every running rollout, with its endpoint, version, step, step start and gates: what the evaluator judges."""
    return list(_rollouts().filter(state=RolloutState.RUNNING).order_by("id"))


def rollout_list(*, endpoint: Endpoint) -> QuerySet[Rollout]:
    """The endpoint's rollouts, newest first."""
    return _rollouts().filter(endpoint=endpoint).order_by("-id")


def rollout_get(*, endpoint: Endpoint, rollout_id: int) -> Rollout:
    """One of the endpoint's rollouts, or 404 (a rollout of another endpoint is not found here)."""
    rollout = _rollouts().filter(endpoint=endpoint, pk=rollout_id).first()
    if rollout is None:
        raise NotFoundError(f"Endpoint '{endpoint.name}' has no rollout {rollout_id}.")
    return rollout


def rollout_active(*, endpoint: Endpoint) -> Rollout | None:
    """The endpoint's active rollout (running, paused or waiting for approval), if any."""
    return _rollouts().filter(endpoint=endpoint, state__in=ROLLOUT_ACTIVE_STATES).first()


def rollout_active_by_endpoint(*, team: Team) -> dict[int, Rollout]:
    """The active rollout of each of the team's endpoints that has one, by endpoint id, in one query."""
    active = Rollout.objects.filter(endpoint__team=team, state__in=ROLLOUT_ACTIVE_STATES).select_related("version")
    return {rollout.endpoint_id: rollout for rollout in active}


def _change_requests() -> QuerySet[ChangeRequest]:
    return ChangeRequest.objects.select_related(
        "team", "endpoint__team", "endpoint__model", "rollout__version", "requested_by", "decided_by"
    )


def change_request_list(
    *, team: Team | None = None, team_id: int | None = None, state: str | None = None
) -> QuerySet[ChangeRequest]:
    """The team's change requests: pending first (oldest first, the next to expire on top), then the rest, newest
    first."""
    wanted = team.pk if team is not None else team_id
    assert wanted is not None
    requests = _change_requests().filter(team_id=wanted)
    if state:
        requests = requests.filter(state=state)
    return requests.order_by(
        Case(When(state="pending", then=0), default=1), Case(When(state="pending", then=F("id")), default=-F("id"))
    )


def change_request_get(*, actor: Actor, request_id: int) -> ChangeRequest:
    """One change request of a team the actor belongs to; 404 otherwise, exactly as for one that does not exist."""
    request = _change_requests().filter(pk=request_id).first()
    if request is None or not actor_can(actor=actor, team=request.team, action=Action.VIEW):
        raise NotFoundError(f"Change request {request_id} not found.")
    return request


def change_request_pending(*, endpoint: Endpoint) -> ChangeRequest | None:
    """The endpoint's pending change request, if any."""
    return _change_requests().filter(endpoint=endpoint, state="pending").first()
