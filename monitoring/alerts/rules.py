"""Alert rules: the services and selectors the API calls, and the enabled rules as the evaluator reads them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, QuerySet, Subquery

from common.errors import ApplicationError, NotFoundError
from deployments.models import Endpoint, Release
from deployments.selectors import endpoint_change_action
from monitoring.choices import AlertAction
from monitoring.models import AlertRule
from teams.permissions import Actor, actor_require
from teams.services import audit_record

# The longest window a rule may sum (the API refuses more); the evaluator keeps no more traffic than this.
MAX_WINDOW_SECONDS = 3600


# --- what the API reads and writes ------------------------------------------------------------------------------


def alert_rule_list(*, endpoint: Endpoint) -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(endpoint=endpoint).select_related("created_by").order_by("name")


def alert_rule_get(*, endpoint: Endpoint, pk: int) -> AlertRule:
    rule = alert_rule_list(endpoint=endpoint).filter(pk=pk).first()
    if rule is None:
        raise NotFoundError(f"Endpoint '{endpoint.name}' has no alert rule {pk}.")
    return rule


def _require_change(actor: Actor, endpoint: Endpoint) -> None:
    actor_require(actor=actor, team=endpoint.team, action=endpoint_change_action(endpoint))


def _rule_data(rule: AlertRule) -> dict[str, Any]:
    return {
        "endpoint": rule.endpoint.name,
        "rule": rule.pk,
        "name": rule.name,
        "metric": rule.metric,
        "threshold": rule.threshold,
        "window_seconds": rule.window_seconds,
        "min_requests": rule.min_requests,
        "action": rule.action,
        "bake_seconds": rule.bake_seconds,
        "enabled": rule.enabled,
    }


def alert_rule_create(
    *,
    actor: Actor,
    endpoint: Endpoint,
    name: str,
    metric: str,
    threshold: float,
    window_seconds: int = 60,
    min_requests: int = 50,
    action: str = AlertAction.NOTIFY,
    bake_seconds: int = 600,
    enabled: bool = True,
) -> AlertRule:
    """Add an alert rule to an endpoint (who may change the endpoint may add its rules)."""
    _require_change(actor, endpoint)
    rule = AlertRule(
        endpoint=endpoint,
        name=name.strip(),
        metric=metric,
        threshold=threshold,
        window_seconds=window_seconds,
        min_requests=min_requests,
        action=action,
        bake_seconds=bake_seconds,
        enabled=enabled,
        created_by=actor.authenticated_user,
    )
    try:
        rule.full_clean(exclude=["endpoint", "created_by"], validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise ApplicationError("invalid", "Invalid alert rule.", exc.message_dict) from exc
    try:
        with transaction.atomic():
            rule.save()
            audit_record(
                team=endpoint.team, actor=actor, action="alert_rule.create", target=rule, data=_rule_data(rule)
            )
    except IntegrityError as exc:
        raise ApplicationError(
            "already_exists", f"'{endpoint.name}' already has an alert rule named '{rule.name}'.", status=409
        ) from exc
    return rule


def alert_rule_enable(*, actor: Actor, rule: AlertRule, enabled: bool) -> AlertRule:
    """Turn a rule on or off (audited); the evaluator reads the change within RULES_REFRESH_SECONDS."""
    _require_change(actor, rule.endpoint)
    if rule.enabled == enabled:
        return rule
    with transaction.atomic():
        AlertRule.objects.filter(pk=rule.pk).update(enabled=enabled)
        rule.enabled = enabled
        audit_record(
            team=rule.endpoint.team,
            actor=actor,
            action="alert_rule.enable" if enabled else "alert_rule.disable",
            target=rule,
            data=_rule_data(rule),
        )
    return rule


def alert_rule_delete(*, actor: Actor, rule: AlertRule) -> None:
    """Delete an alert rule; the alerts it fired stay, as history."""
    endpoint = rule.endpoint
    _require_change(actor, endpoint)
    with transaction.atomic():
        data = _rule_data(rule)
        rule.delete()
        audit_record(team=endpoint.team, actor=actor, action="alert_rule.delete", data=data)


# --- what the evaluator knows of the rules ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveRelease:
    """The live release of a watched endpoint: which version serves in which role, and since when."""

    number: int
    started: float  # epoch seconds
    action: str
    primary: int
    canary: int | None
    shadow: int | None

    def roles(self) -> list[tuple[int, str]]:
        pairs = [(self.primary, "primary"), (self.canary, "canary"), (self.shadow, "shadow")]
        return [(version, role) for version, role in pairs if version is not None]


@dataclass(frozen=True, slots=True)
class WatchedRule:
    """An enabled rule with its endpoint's live release, as read once for many seconds of evaluation."""

    id: int
    name: str
    metric: str
    threshold: float
    window_seconds: int
    min_requests: int
    action: str
    bake_seconds: int
    endpoint_id: int
    endpoint: str
    team: str
    release: LiveRelease


def alert_rules_watched() -> list[WatchedRule]:
    """Every enabled rule joined with its endpoint and the endpoint's live (newest) release, in one query."""
    newest = Release.objects.filter(endpoint=OuterRef("endpoint")).order_by("-number").values("number")[:1]
    rows = (
        AlertRule.objects.filter(enabled=True, endpoint__releases__number=Subquery(newest))
        .order_by("pk")
        .values_list(
            "pk",
            "name",
            "metric",
            "threshold",
            "window_seconds",
            "min_requests",
            "action",
            "bake_seconds",
            "endpoint_id",
            "endpoint__name",
            "endpoint__team__slug",
            "endpoint__releases__number",
            "endpoint__releases__created_at",
            "endpoint__releases__action",
            "endpoint__releases__primary__number",
            "endpoint__releases__canary__number",
            "endpoint__releases__shadow__number",
        )
    )
    return [WatchedRule(*row[:11], release=LiveRelease(row[11], row[12].timestamp(), *row[13:])) for row in rows]
