"""The alerts cards: the endpoint page's (rules: create, enable or disable, delete; the alerts they fired) and the
team dashboard's (the alerts fired on any of the team's endpoints).

Both pages belong to deployments, which must not import monitoring (docs/architecture.md); so each card is this
app's own fragment, which its page loads (htmx) and refreshes on the team's alert events.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from common.errors import ApplicationError, PermissionDeniedError
from deployments.models import Endpoint
from deployments.selectors import endpoint_change_action, endpoint_get
from monitoring.alerts.firing import alert_list, alert_list_for_team
from monitoring.alerts.rules import (
    alert_rule_create,
    alert_rule_delete,
    alert_rule_enable,
    alert_rule_get,
    alert_rule_list,
)
from monitoring.choices import AlertAction, AlertMetric
from teams.permissions import Actor, actor_can
from teams.selectors import team_get_for_actor
from teams.views import domain_errors_as_http

ALERTS_SHOWN = 10
TEAM_ALERTS_SHOWN = 8


def _card(request: HttpRequest, actor: Actor, endpoint: Endpoint, error: str = "", done: str = "") -> HttpResponse:
    context = {
        "endpoint": endpoint,
        "rules": alert_rule_list(endpoint=endpoint),
        "alerts": alert_list(endpoint=endpoint)[:ALERTS_SHOWN],
        "metrics": AlertMetric.choices,
        "actions": AlertAction.choices,
        "can_change": actor_can(actor=actor, team=endpoint.team, action=endpoint_change_action(endpoint)),
        "error": error,
        "done": done,
    }
    return render(request, "monitoring/_alerts_card.html", context, status=400 if error else 200)


@require_GET
@login_required
@domain_errors_as_http
def alerts_card(request: HttpRequest, name: str) -> HttpResponse:
    actor = Actor(user=request.user)
    return _card(request, actor, endpoint_get(actor=actor, name=name))


@require_GET
@login_required
@domain_errors_as_http
def team_alerts_card(request: HttpRequest, team: str) -> HttpResponse:
    """The team dashboard's recent alerts: what fired on which endpoint, with its numbers, newest first."""
    obj = team_get_for_actor(actor=Actor(user=request.user), slug=team)
    alerts = alert_list_for_team(team=obj)[:TEAM_ALERTS_SHOWN]
    return render(request, "monitoring/_team_alerts.html", {"team": obj, "alerts": alerts})


def _number(form: Any, field: str, kind: type, default: Any) -> Any:
    raw = form.get(field, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ApplicationError("invalid", "Invalid alert rule.", {field: [f"'{raw}' is not a number."]}) from None


@require_POST
@login_required
@domain_errors_as_http
def alert_rule_add(request: HttpRequest, name: str) -> HttpResponse:
    actor = Actor(user=request.user)
    endpoint = endpoint_get(actor=actor, name=name)
    form = request.POST
    try:
        rule = alert_rule_create(
            actor=actor,
            endpoint=endpoint,
            name=form.get("name", ""),
            metric=form.get("metric", ""),
            threshold=_number(form, "threshold", float, None),
            window_seconds=_number(form, "window_seconds", int, 60),
            min_requests=_number(form, "min_requests", int, 50),
            action=form.get("action", AlertAction.NOTIFY),
            bake_seconds=_number(form, "bake_seconds", int, 600),
        )
    except PermissionDeniedError:
        raise
    except ApplicationError as exc:
        return _card(request, actor, endpoint, error=exc.text())
    return _card(request, actor, endpoint, done=f"Rule “{rule.name}” added.")


@require_POST
@login_required
@domain_errors_as_http
def alert_rule_change(request: HttpRequest, name: str, pk: int, change: str) -> HttpResponse:
    """Enable, disable or delete one rule (audited), then show the card again."""
    if change not in ("enable", "disable", "delete"):
        raise Http404(f"No such change: {change}")
    actor = Actor(user=request.user)
    endpoint = endpoint_get(actor=actor, name=name)
    rule = alert_rule_get(endpoint=endpoint, pk=pk)
    if change == "delete":
        alert_rule_delete(actor=actor, rule=rule)
        done = f"Rule “{rule.name}” deleted; the alerts it fired stay below."
    else:
        alert_rule_enable(actor=actor, rule=rule, enabled=change == "enable")
        done = f"Rule “{rule.name}” {'enabled' if rule.enabled else 'disabled'}."
    return _card(request, actor, endpoint, done=done)
