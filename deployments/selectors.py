"""Reads of the control plane, through the permission layer."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db.models import OuterRef, QuerySet, Subquery

from common.errors import NotFoundError
from deployments.models import Endpoint, Release
from teams.choices import Action
from teams.permissions import Actor, actor_can
from teams.selectors import team_list_for_actor

# Bumped on commit by every change a serving process must learn of (see services.release_stamp_bump).
RELEASE_STAMP_KEY = "deployments:release-stamp"


def release_stamp() -> Any:
    """The stamp serving processes poll: when it changes, they re-read the live releases."""
    return cache.get(RELEASE_STAMP_KEY)


def release_live_list() -> QuerySet[Release]:
    """The live (newest) release of every endpoint, with its endpoint and versions, in one query."""
    newest = Release.objects.filter(endpoint=OuterRef("endpoint")).order_by("-number").values("number")[:1]
    return Release.objects.filter(number=Subquery(newest)).select_related("endpoint", "primary", "canary", "shadow")


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
