from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from teams.permissions import Actor
from teams.selectors import team_list_for_actor

CURRENT_TEAM_SESSION_KEY = "current_team"


def team_switcher(request: HttpRequest) -> dict[str, Any]:
    """Give every page the user's teams and the current one, for the navigation's team switcher."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    teams = list(team_list_for_actor(actor=Actor(user=request.user)))
    current = request.resolver_match.kwargs.get("team") if request.resolver_match else None
    current = current or request.session.get(CURRENT_TEAM_SESSION_KEY)
    current_team = next((t for t in teams if t.slug == current), teams[0] if teams else None)
    return {"user_teams": teams, "current_team": current_team}
