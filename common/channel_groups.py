"""Channel-layer group names, made in one place so producers (any app) and consumers (monitoring) agree."""

from __future__ import annotations


def team_group(slug: str) -> str:
    return f"team.{slug}"


def endpoint_group(name: str) -> str:
    return f"endpoint.{name}"


def user_group(user_id: int) -> str:
    """Every open socket of one user, whatever it streams: told to re-check access when a membership changes."""
    return f"user.{user_id}"
