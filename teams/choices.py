"""Roles and the actions they allow."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    DEVELOPER = "developer", "Developer"
    ADMIN = "admin", "Admin"


ROLE_RANK: dict[str, int] = {Role.VIEWER: 1, Role.DEVELOPER: 2, Role.ADMIN: 3}


class Action(models.TextChoices):
    """What an actor may want to do to a team's objects; each needs a minimum role."""

    VIEW = "view", "Read the team's objects"
    INVOKE = "invoke", "Call the team's private endpoints"
    DEVELOP = "develop", "Upload, convert, create endpoints, change unprotected endpoints"
    CHANGE_PROTECTED = "change_protected", "Change protected (production) endpoints"
    MANAGE = "manage", "Manage members, tokens and team settings"


ACTION_MIN_ROLE: dict[str, str] = {
    Action.VIEW: Role.VIEWER,
    Action.INVOKE: Role.VIEWER,
    Action.DEVELOP: Role.DEVELOPER,
    Action.CHANGE_PROTECTED: Role.ADMIN,
    Action.MANAGE: Role.ADMIN,
}


def role_min(first: str, second: str) -> str:
    """Return the weaker of two roles (a token never grants more than its user holds)."""
    return first if ROLE_RANK[first] <= ROLE_RANK[second] else second


def role_allows(role: str, action: str) -> bool:
    return ROLE_RANK[role] >= ROLE_RANK[ACTION_MIN_ROLE[action]]
