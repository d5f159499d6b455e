"""Reads of teams, members, tokens and the audit trail, always through the permission layer."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from common.errors import NotFoundError
from teams.choices import Action, role_min
from teams.models import ApiToken, AuditEvent, Membership, Team
from teams.permissions import Actor, actor_can, actor_require


def team_list_for_actor(*, actor: Actor) -> QuerySet[Team]:
    """List the teams the actor belongs to (a token sees only its own team)."""
    if not actor.user.is_authenticated:
        return Team.objects.none()
    teams = Team.objects.filter(memberships__user_id=actor.user_id)
    if actor.token is not None:
        teams = teams.filter(pk=actor.token.team_id)
    return teams.order_by("slug")


@dataclass(frozen=True)
class TeamRole:
    team: Team
    role: str


def team_list_with_roles(*, actor: Actor) -> list[TeamRole]:
    """List the actor's teams, each with the actor's effective role (capped by the token, if any)."""
    if not actor.user.is_authenticated:
        return []
    memberships = Membership.objects.filter(user_id=actor.user_id).select_related("team").order_by("team__slug")
    token = actor.token
    if token is not None:
        memberships = memberships.filter(team_id=token.team_id)
    return [TeamRole(team=m.team, role=role_min(m.role, token.role) if token else m.role) for m in memberships]


def team_get_for_actor(*, actor: Actor, slug: str, action: str = Action.VIEW) -> Team:
    """Return the team if the actor may do the action in it: 404 for outsiders, 403 for a weak role."""
    team = Team.objects.filter(slug=slug).first()
    if team is None:
        raise NotFoundError(f"Team '{slug}' not found.")
    actor_require(actor=actor, team=team, action=action)
    return team


def membership_list(*, actor: Actor, team: Team) -> QuerySet[Membership]:
    actor_require(actor=actor, team=team, action=Action.VIEW)
    return Membership.objects.filter(team=team).select_related("user").order_by("user__username")


def api_token_list(*, actor: Actor, team: Team) -> QuerySet[ApiToken]:
    """List the team's tokens: all of them for admins, the actor's own for everyone else."""
    actor_require(actor=actor, team=team, action=Action.VIEW)
    tokens = ApiToken.objects.filter(team=team).select_related("user", "team")
    if not actor_can(actor=actor, team=team, action=Action.MANAGE):
        tokens = tokens.filter(user_id=actor.user_id)
    return tokens.order_by("revoked_at", "-created_at")


def api_token_get(*, actor: Actor, team: Team, token_id: int) -> ApiToken:
    token = api_token_list(actor=actor, team=team).filter(pk=token_id).first()
    if token is None:
        raise NotFoundError(f"Token {token_id} not found in team '{team.slug}'.")
    return token


def audit_event_list(*, actor: Actor, team: Team | None = None) -> QuerySet[AuditEvent]:
    """List audit events of the actor's teams (or of one of them), newest first."""
    if team is not None:
        actor_require(actor=actor, team=team, action=Action.VIEW)
        events = AuditEvent.objects.filter(team=team)
    else:
        events = AuditEvent.objects.filter(team__in=team_list_for_actor(actor=actor).values("pk"))
    return events.select_related("team", "actor").order_by("-created_at", "-id")
