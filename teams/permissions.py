"""The one permission layer: may this actor do this action on this team's objects?

A user with no role in a team gets 404 for everything in it (the team's objects do not exist for them);
a member whose role is too weak gets 403. A token acts only on its own team, capped at its role.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AnonymousUser, User

from common.errors import NotFoundError, PermissionDeniedError
from teams.choices import ACTION_MIN_ROLE, Action, role_allows, role_min
from teams.models import ApiToken, Membership, Team


@dataclass
class Actor:
    """Who is acting: a user, and the API token they used (None for a browser session or a command)."""

    user: User | AnonymousUser
    token: ApiToken | None = None
    _roles: dict[int, str | None] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_request(cls, request: Any) -> Actor:
        """Build the actor of a DRF or Django request (DRF puts the token in request.auth)."""
        token = getattr(request, "auth", None)
        return cls(user=request.user, token=token if isinstance(token, ApiToken) else None)

    @property
    def authenticated_user(self) -> User:
        """The acting user; anonymous actors have no role anywhere, so callers check that first."""
        if isinstance(self.user, AnonymousUser) or not self.user.is_authenticated:
            raise PermissionDeniedError("Log in or send a token first.")
        return self.user

    @property
    def user_id(self) -> int:
        return self.authenticated_user.pk


def actor_role(*, actor: Actor, team: Team) -> str | None:
    """Return the actor's effective role in the team, or None when it has none."""
    if not actor.user.is_authenticated or not actor.user.is_active:
        return None
    if actor.token is not None and actor.token.team_id != team.pk:
        return None
    if team.pk not in actor._roles:
        role = Membership.objects.filter(team=team, user_id=actor.user_id).values_list("role", flat=True).first()
        if role is not None and actor.token is not None:
            role = role_min(role, actor.token.role)
        actor._roles[team.pk] = role
    return actor._roles[team.pk]


def actor_can(*, actor: Actor, team: Team, action: str) -> bool:
    role = actor_role(actor=actor, team=team)
    return role is not None and role_allows(role, action)


def actor_require(*, actor: Actor, team: Team, action: str) -> str:
    """Raise unless the actor may do the action in the team; return the actor's role."""
    role = actor_role(actor=actor, team=team)
    if role is None:
        raise NotFoundError(f"Team '{team.slug}' not found.")
    if not role_allows(role, action):
        needed = ACTION_MIN_ROLE[action]
        via = " through this token" if actor.token is not None else ""
        raise PermissionDeniedError(
            f"This needs the {needed} role in team '{team.slug}'; you have {role}{via}.",
            {"team": team.slug, "action": Action(action).value, "required_role": needed, "role": role},
        )
    return role
