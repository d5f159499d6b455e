"""Alert rules and auto-rollback: rules per endpoint, evaluated every second on the traffic a web process served.

Each web process evaluates the traffic it served itself (the recorder's windows, kept here for up to an hour).
With N processes behind a balancer each sees about 1/N of the traffic, so a threshold on a rate or on p95 still
holds in every process, while `min_requests` applies per process (a rule needing 50 requests sees them once the
endpoint has served about 50 x N). Processes that see the same bad version at once are reconciled by the
database: one Alert row per (rule, release, version), and `release_rollback_automatic` rolls a release back only
while it is still live, so a bad canary is rolled back exactly once.
"""

from __future__ import annotations

import bisect
import logging
import math
import operator
import time
from array import array
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, close_old_connections, transaction
from django.db.models import OuterRef, QuerySet, Subquery

from common.errors import ApplicationError, NotFoundError
from deployments.choices import ReleaseAction
from deployments.models import Endpoint, Release
from deployments.services import release_rollback_automatic
from monitoring.choices import AlertAction, AlertMetric, AlertOutcome
from monitoring.events import team_event_publish_async
from monitoring.models import Alert, AlertRule
from monitoring.recorder import LATENCY_BOUNDS, Series, SeriesKey
from teams.choices import Action
from teams.permissions import Actor, actor_require
from teams.services import audit_record

logger = logging.getLogger(__name__)

MAX_WINDOW_SECONDS = 3600
# Rules (and the live release of their endpoints) are re-read this often; a process's own rollback re-reads at once.
RULES_REFRESH_SECONDS = 5.0
SERVING_ROLES = ("primary", "canary")


# --- rules and alerts: reads and writes ------------------------------------------------------------------------


def alert_rule_list(*, endpoint: Endpoint) -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(endpoint=endpoint).select_related("created_by").order_by("name")


def alert_rule_get(*, endpoint: Endpoint, pk: int) -> AlertRule:
    rule = alert_rule_list(endpoint=endpoint).filter(pk=pk).first()
    if rule is None:
        raise NotFoundError(f"Endpoint '{endpoint.name}' has no alert rule {pk}.")
    return rule


def alert_list(*, endpoint: Endpoint) -> QuerySet[Alert]:
    return Alert.objects.filter(endpoint=endpoint).order_by("-fired_at", "-id")


def _require_change(actor: Actor, endpoint: Endpoint) -> None:
    action = Action.CHANGE_PROTECTED if endpoint.protected else Action.DEVELOP
    actor_require(actor=actor, team=endpoint.team, action=action)


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


def alert_rule_delete(*, actor: Actor, rule: AlertRule) -> None:
    """Delete an alert rule; the alerts it fired stay, as history."""
    endpoint = rule.endpoint
    _require_change(actor, endpoint)
    with transaction.atomic():
        data = _rule_data(rule)
        rule.delete()
        audit_record(team=endpoint.team, actor=actor, action="alert_rule.delete", data=data)


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


# --- per-second totals, kept so that any window's sum is two lookups ---------------------------------------------

# count, errors, disagreements, then the latency buckets
Totals = tuple[int, ...]
WIDTH = 3 + len(LATENCY_BOUNDS) + 1
_ZERO: Totals = (0,) * WIDTH


class _Track:
    """Running totals of one (endpoint, version, role) series at each second it had traffic.

    Summing an hour-long window second by second for every rule, every second, would cost the event loop that
    serves requests; running totals make any window the difference of two bisected lookups. They are kept in
    flat 64-bit arrays (an hour of one busy series is about 600 KB, not the several MB of tuples of ints).
    """

    __slots__ = ("base", "seconds", "totals")

    def __init__(self) -> None:
        self.seconds = array("q")
        self.totals = array("q")  # WIDTH running totals per kept second
        self.base: Totals = _ZERO  # the running total before the oldest second kept

    def _at(self, i: int) -> Totals:
        return tuple(self.totals[i * WIDTH : (i + 1) * WIDTH])

    def add(self, second: int, series: Series) -> None:
        values = (series.count, series.errors, series.disagreements, *series.latency_buckets)
        kept = len(self.seconds)
        summed = map(operator.add, self._at(kept - 1) if kept else self.base, values)
        if kept and second <= self.seconds[-1]:
            self.totals[(kept - 1) * WIDTH :] = array("q", summed)  # the same second again (a final flush)
        else:
            self.seconds.append(second)
            self.totals.extend(summed)

    def _upto(self, second: int) -> Totals:
        i = bisect.bisect_right(self.seconds, second)
        return self._at(i - 1) if i else self.base

    def between(self, first: int, last: int) -> Totals:
        """The sums over the seconds first..last, both included."""
        return tuple(map(operator.sub, self._upto(last), self._upto(first - 1)))

    def prune(self, oldest: int) -> None:
        """Forget seconds before `oldest`, a quarter of what is kept at a time (each cut moves the arrays)."""
        i = bisect.bisect_left(self.seconds, oldest)
        if i and i * 4 >= len(self.seconds):
            self.base = self._at(i - 1)
            del self.seconds[:i]
            del self.totals[: i * WIDTH]


def metric_value(metric: str, totals: Totals) -> float:
    """A rule's metric over summed totals (which hold at least one request)."""
    count, errors, disagreements = totals[0], totals[1], totals[2]
    if metric == AlertMetric.ERROR_RATE:
        return errors / count
    if metric == AlertMetric.DISAGREEMENT_RATE:
        return disagreements / count
    p95 = Series(count=count, latency_buckets=list(totals[3:])).quantile(0.95)
    assert p95 is not None
    return min(p95, LATENCY_BOUNDS[-1]) * 1000  # beyond the last finite bucket reads as that bucket's bound


# --- firing ---------------------------------------------------------------------------------------------------


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


def _rollback_refusal(firing: Firing, now: float) -> str:
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


def _in_thread_with_db(function: Any, **kwargs: Any) -> Any:
    # Run off the serving loop on a thread of its own; never keep a broken or over-age connection there.
    close_old_connections()
    try:
        return function(**kwargs)
    finally:
        close_old_connections()


async def _db(function: Any, **kwargs: Any) -> Any:
    return await sync_to_async(_in_thread_with_db, thread_sensitive=False)(function, **kwargs)


class AlertEvaluator:
    """Evaluate the enabled alert rules every second on the traffic this process served (see the module's note)."""

    def __init__(self) -> None:
        self._tracks: dict[SeriesKey, _Track] = {}
        self._rules: list[WatchedRule] = []
        self._rules_read_at = -math.inf
        # Endpoints with enabled rules (only their series are kept), and the longest window among those rules;
        # None until the rules are first read: keep everything meanwhile.
        self._watched: set[str] | None = None
        self._horizon = MAX_WINDOW_SECONDS
        self._fired: set[tuple[int, int, int]] = set()  # (rule, release, version) fired by or seen in this process
        # The last drift window of each (endpoint, version): (its last second, sampled rows, largest PSI).
        self._drift: dict[tuple[str, int], tuple[int, int, float]] = {}

    def observe(self, second: int, window: dict[SeriesKey, Series]) -> None:
        """Keep one second's window (copied: the flusher goes on merging these series into its minutes)."""
        watched = self._watched
        for key, series in window.items():
            if watched is None or key[0] in watched:
                track = self._tracks.get(key)
                if track is None:
                    track = self._tracks[key] = _Track()
                track.add(second, series)
        oldest = second - self._horizon + 1
        for key, track in list(self._tracks.items()):
            if watched is not None and key[0] not in watched:
                del self._tracks[key]  # its endpoint has no enabled rule any more
            else:
                track.prune(oldest)

    def observe_drift(self, second: int, taken: dict[tuple[str, int], tuple[int, dict[str, float]]]) -> None:
        """Keep the latest drift window of each version (rows sampled and the largest PSI of any feature)."""
        for key, (rows, values) in taken.items():
            if values:
                self._drift[key] = (second, rows, max(values.values()))

    async def evaluate(self, now: float) -> list[Alert]:
        """Fire the rules whose metric is over their threshold in the window that ended with the last second."""
        await self._rules_refresh()
        last = int(now) - 1
        firings: list[Firing] = []
        for rule in self._rules:
            release = rule.release
            # Only traffic since this release went live counts: a version's errors under an earlier release must
            # not abort a fresh one at its first second.
            first = max(last - rule.window_seconds + 1, int(release.started))
            for version, role in release.roles():
                if rule.metric == AlertMetric.DISAGREEMENT_RATE and role != "shadow":
                    continue  # disagreement is measured on shadow copies only
                fired_key = (rule.id, release.number, version)
                if fired_key in self._fired:
                    continue
                if rule.metric == AlertMetric.DRIFT_PSI:
                    # Drift is judged per drift window (sampled rows), on the versions that answer callers.
                    drift = self._drift.get((rule.endpoint, version))
                    if role == "shadow" or drift is None or drift[0] < first:
                        continue
                    _, requests, value = drift
                    if requests < rule.min_requests:
                        continue
                else:
                    track = self._tracks.get((rule.endpoint, version, role))
                    if track is None:
                        continue
                    totals = track.between(first, last)
                    requests = totals[0]
                    if requests < rule.min_requests:
                        continue
                    value = metric_value(rule.metric, totals)
                if value > rule.threshold:
                    self._fired.add(fired_key)
                    firings.append(Firing(rule=rule, version=version, role=role, value=value, requests=requests))
        alerts = []
        for i, firing in enumerate(firings):
            try:
                alert = await self._fire(firing, now)
            except DatabaseError as exc:
                # The database is away: try these again next second, without waiting on it once per firing now.
                for unfired in firings[i:]:
                    self._fired.discard((unfired.rule.id, unfired.rule.release.number, unfired.version))
                logger.warning("cannot record %d alerts yet (%s); will retry", len(firings) - i, exc)
                break
            if alert is not None:
                alerts.append(alert)
        return alerts

    async def _fire(self, firing: Firing, now: float) -> Alert | None:
        refusal = _rollback_refusal(firing, now)
        rollback = firing.rule.action == AlertAction.ROLLBACK and not refusal
        alert: Alert | None = await _db(alert_fire, firing=firing, rollback=rollback, detail=refusal)
        if alert is None:
            return None  # fired already, by another process or before a restart
        endpoint = firing.rule.endpoint
        logger.warning("%s: %s", firing.describe(), alert.action_taken)
        if rollback:
            self._rules_read_at = -math.inf  # the live release changed (or should have): re-read it now
        try:
            await team_event_publish_async(team=firing.rule.team, kind="alert", data=alert_data(alert, endpoint))
        except Exception:  # Redis away: the alert is stored and shown by the API and pages anyway
            logger.warning("alert event for %s not published", endpoint, exc_info=True)
        return alert

    async def _rules_refresh(self) -> None:
        if time.monotonic() - self._rules_read_at < RULES_REFRESH_SECONDS:
            return
        self._rules_read_at = time.monotonic()
        try:
            rules: list[WatchedRule] = await _db(alert_rules_watched)
        except Exception:
            logger.warning("cannot read alert rules; keeping the last ones", exc_info=True)
            return
        self._rules = rules
        self._watched = {rule.endpoint for rule in rules}
        self._horizon = max((rule.window_seconds for rule in rules), default=0)
        self._horizon = min(self._horizon, MAX_WINDOW_SECONDS)
        live = {(rule.id, rule.release.number) for rule in rules}
        self._fired = {key for key in self._fired if key[:2] in live}
