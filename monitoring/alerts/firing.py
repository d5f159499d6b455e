"""Alerts fired: recording one (and rolling its release back), listing them, and their shape on the event stream."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from deployments.choices import ReleaseAction
from deployments.models import Endpoint, Release
from deployments.services import release_rollback_automatic
from monitoring.alerts.rules import LiveRelease, WatchedRule
from monitoring.choices import AlertAction, AlertOutcome
from monitoring.models import Alert
from teams.models import Team

logger = logging.getLogger(__name__)

SERVING_ROLES = ("primary", "canary")


def alert_list(*, endpoint: Endpoint) -> QuerySet[Alert]:
    return Alert.objects.filter(endpoint=endpoint).order_by("-fired_at", "-id")


def alert_list_for_team(*, team: Team) -> QuerySet[Alert]:
    """The alerts fired on the team's endpoints, newest first, each with its endpoint."""
    return Alert.objects.filter(endpoint__team=team).select_related("endpoint").order_by("-fired_at", "-id")


def alert_data(alert: Alert, endpoint: str) -> dict[str, Any]:
    """An alert as the team event stream and the API show it."""
    return {
        "id": alert.pk,
        "endpoint": endpoint,
        "rule": alert.rule_id,
        "rule_name": alert.rule_name,
        "metric": alert.metric,
        "release": alert.release,
        "version": alert.version,
        "role": alert.role,
        "value": alert.value,
        "threshold": alert.threshold,
        "window_seconds": alert.window_seconds,
        "requests": alert.requests,
        "fired_at": alert.fired_at.isoformat(),
        "action_taken": alert.action_taken,
        "rollback_release": alert.rollback_release,
        "detail": alert.detail,
    }


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule whose metric crossed its threshold for one version of the live release."""

    rule: WatchedRule
    version: int
    role: str
    value: float
    requests: int

    def evidence(self) -> dict[str, Any]:
        return {
            "rule": {"id": self.rule.id, "name": self.rule.name},
            "metric": self.rule.metric,
            "value": self.value,
            "threshold": self.rule.threshold,
            "window_seconds": self.rule.window_seconds,
            "requests": self.requests,
            "release": self.rule.release.number,
            "version": self.version,
            "role": self.role,
        }

    def describe(self) -> str:
        rule = self.rule
        return (
            f"alert rule '{rule.name}': {rule.metric} {self.value:.4g} > {rule.threshold:g} on v{self.version} "
            f"({self.role}) of release {rule.release.number} over {rule.window_seconds} s ({self.requests} requests)"
        )


def rollback_refusal(firing: Firing, now: float) -> str:
    """Why a rollback rule only notifies for this firing ("" when it rolls back)."""
    rule, release = firing.rule, firing.rule.release
    if rule.action != AlertAction.ROLLBACK:
        return ""
    if firing.role not in SERVING_ROLES:
        return f"v{firing.version} is the {firing.role}: it answers no caller, so nothing is rolled back."
    age = now - release.started
    if age >= rule.bake_seconds:
        return f"Release {release.number} is {age:.0f} s old, past the {rule.bake_seconds} s bake period: notify only."
    if release.action == ReleaseAction.ROLLBACK:
        # Rolling back a rollback would bring back the very release it replaced.
        return f"Release {release.number} is itself a rollback: it is not rolled back automatically."
    return ""


def _rolled_back_text(judged: LiveRelease, release: Release) -> str:
    """What an automatic rollback did, in words (the rollback rule of deployments.services decided it)."""
    serving = f"v{release.primary.number}" + (f" with shadow v{release.shadow.number}" if release.shadow else "")
    if judged.canary is not None:
        undone = f"the canary v{judged.canary} is removed"
    elif judged.primary != release.primary.number:
        undone = f"v{judged.primary} is no longer the primary"
    else:
        undone = f"the shadow v{judged.shadow} is removed"
    return f"Rolled back: {undone}; release {release.number} serves {serving}."


def alert_fire(*, firing: Firing, rollback: bool, detail: str = "") -> Alert | None:
    """Record an alert and, for a rollback rule in its bake period, roll the release back; None if already fired.

    The unique (rule, release, version) row makes a second process that sees the same thing at the same moment wait
    for the first and then do nothing.
    """
    rule = firing.rule
    with transaction.atomic():
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    rule_id=rule.id,
                    rule_name=rule.name,
                    endpoint_id=rule.endpoint_id,
                    release=rule.release.number,
                    version=firing.version,
                    role=firing.role,
                    metric=rule.metric,
                    value=firing.value,
                    threshold=rule.threshold,
                    window_seconds=rule.window_seconds,
                    requests=firing.requests,
                    action_taken=AlertOutcome.NOTIFIED,
                    detail=detail,
                )
        except IntegrityError:
            return None
        if rollback:
            try:
                endpoint = Endpoint.objects.select_related("team").get(pk=rule.endpoint_id)
                with transaction.atomic():
                    release = release_rollback_automatic(
                        endpoint=endpoint,
                        rule=rule.name,
                        reason=f"Automatic rollback: {firing.describe()}.",
                        evidence=firing.evidence(),
                    )
            except Exception as exc:  # the alert is still recorded, saying why nothing was rolled back
                logger.warning("automatic rollback of %s failed", rule.endpoint, exc_info=True)
                alert.action_taken = AlertOutcome.ROLLBACK_FAILED
                alert.detail = f"The rollback failed: {exc}"
            else:
                if release is None:
                    alert.detail = f"Release {rule.release.number} was no longer live: nothing rolled back."
                else:
                    alert.action_taken = AlertOutcome.ROLLED_BACK
                    alert.rollback_release = release.number
                    alert.detail = _rolled_back_text(rule.release, release)
            alert.save(update_fields=["action_taken", "rollback_release", "detail"])
    return alert
