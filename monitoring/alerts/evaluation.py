"""The alert evaluator: the enabled rules judged on running totals of the traffic it is given, second by second.

The cluster's one evaluator (monitoring/alerts/cluster.py) feeds it the seconds every web process wrote, so a rule's
threshold, minimum requests and p95 hold for the whole endpoint, however many processes serve it. Its decisions are
reconciled by the database: one Alert row per (rule, release, version), and `release_rollback_automatic` rolls a
release back only while it is still live, so a bad canary is rolled back exactly once.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, close_old_connections

from common.events import team_event_publish_async
from monitoring.alerts.firing import Firing, alert_data, alert_fire, rollback_refusal
from monitoring.alerts.history import RunningTotals, metric_value
from monitoring.alerts.rules import MAX_WINDOW_SECONDS, WatchedRule, alert_rules_watched
from monitoring.choices import AlertAction, AlertMetric
from monitoring.models import Alert
from monitoring.recorder import Series, SeriesKey

logger = logging.getLogger(__name__)

# Rules (and the live release of their endpoints) are re-read this often; a process's own rollback re-reads at once.
RULES_REFRESH_SECONDS = 5.0


def _in_thread_with_db(function: Any, **kwargs: Any) -> Any:
    # Run off the serving loop on a thread of its own; never keep a broken or over-age connection there.
    close_old_connections()
    try:
        return function(**kwargs)
    finally:
        close_old_connections()


async def in_db_thread(function: Any, **kwargs: Any) -> Any:
    return await sync_to_async(_in_thread_with_db, thread_sensitive=False)(function, **kwargs)


class AlertEvaluator:
    """Evaluate the enabled alert rules every second on the traffic this process served (see the module's note)."""

    def __init__(self) -> None:
        self._tracks: dict[SeriesKey, RunningTotals] = {}
        self._rules: list[WatchedRule] = []
        self._rules_read_at = -math.inf
        # Endpoints with enabled rules (only their series are kept), and the longest window among those rules;
        # None until the rules are first read: keep everything meanwhile.
        self._watched: set[str] | None = None
        self._horizon = MAX_WINDOW_SECONDS
        self._fired: set[tuple[int, int, int]] = set()  # (rule, release, version) fired by or seen in this process
        # The last drift window of each (endpoint, version): (its last second, sampled rows, largest PSI).
        self._drift: dict[tuple[str, int], tuple[int, int, float]] = {}
        # Endpoints whose traffic is kept for something else than a rule (running rollouts), and how far back.
        self._also: set[str] = set()
        self._also_horizon = 0

    def watch(self, endpoints: set[str], horizon: int) -> None:
        """Keep these endpoints' traffic too, `horizon` seconds back (at most MAX_WINDOW_SECONDS): rollouts judge it."""
        self._also = endpoints
        self._also_horizon = min(horizon, MAX_WINDOW_SECONDS)

    @property
    def watched(self) -> set[str] | None:
        """The endpoints whose traffic is kept (None until the rules are first read: everything)."""
        return None if self._watched is None else self._watched | self._also

    def forget_traffic(self) -> None:
        """Drop the traffic kept so far (it is about to be read again from the start of a longer horizon)."""
        self._tracks.clear()

    def totals(self, key: SeriesKey, first: int, last: int) -> tuple[int, ...] | None:
        """One series' sums over the seconds first..last (count, errors, disagreements, latency buckets), if kept."""
        track = self._tracks.get(key)
        return track.between(first, last) if track is not None else None

    def drift(self, endpoint: str, version: int) -> tuple[int, int, float] | None:
        """The latest drift window of a version: (its last second, sampled rows, largest PSI), if any."""
        return self._drift.get((endpoint, version))

    def observe(self, second: int, window: dict[SeriesKey, Series]) -> None:
        """Keep one second's window (copied: the flusher goes on merging these series into its minutes)."""
        watched = self.watched
        for key, series in window.items():
            if watched is None or key[0] in watched:
                track = self._tracks.get(key)
                if track is None:
                    track = self._tracks[key] = RunningTotals()
                track.add(second, series)
        oldest = second - self.horizon + 1
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
        refusal = rollback_refusal(firing, now)
        rollback = firing.rule.action == AlertAction.ROLLBACK and not refusal
        alert: Alert | None = await in_db_thread(alert_fire, firing=firing, rollback=rollback, detail=refusal)
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

    @property
    def horizon(self) -> int:
        """How many seconds back the enabled rules' windows (and the watched rollouts) reach, at most an hour."""
        return max(self._horizon, self._also_horizon)

    async def rules_refresh(self) -> None:
        """Re-read the enabled rules and their endpoints' live releases (at most every RULES_REFRESH_SECONDS)."""
        await self._rules_refresh()

    async def _rules_refresh(self) -> None:
        if time.monotonic() - self._rules_read_at < RULES_REFRESH_SECONDS:
            return
        self._rules_read_at = time.monotonic()
        try:
            rules: list[WatchedRule] = await in_db_thread(alert_rules_watched)
        except Exception:
            logger.warning("cannot read alert rules; keeping the last ones", exc_info=True)
            return
        self._rules = rules
        self._watched = {rule.endpoint for rule in rules}
        self._horizon = max((rule.window_seconds for rule in rules), default=0)
        self._horizon = min(self._horizon, MAX_WINDOW_SECONDS)
        live = {(rule.id, rule.release.number) for rule in rules}
        self._fired = {key for key in self._fired if key[:2] in live}
