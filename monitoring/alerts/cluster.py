"""The cluster's one evaluator: alert rules judged once, on the traffic of every web process.

Every web (and gRPC) process writes its per-second series to `MetricSecond` (the flusher). Every one of them also
runs `ClusterEvaluator.tick` once a second, but only the holder of the evaluator lease (a row its holder renews
each second, taken over by a conditional UPDATE once it has lapsed for LEASE_SECONDS) reads what every process
wrote and judges it: thresholds, minimum requests and p95 mean the same with one web process or ten. It reads
READ_LAG_SECONDS behind the clock, so that each process's row for a second is written before it is read (a flusher
writes a second within a fraction of a second of its end): a rule fires within about three seconds of the traffic
that breaks it.

Rollouts are judged here too, after the rules: each running rollout's step, on the traffic of its canary, the
primary and the shadow since the step started, through `deployments.rollouts.rollout_judge`, which moves the
canary share, promotes or rolls back by conditional UPDATE.

Decisions are idempotent where they are written (one Alert row per rule, release and version; a release rolled
back only while it is still live), so two evaluators for a moment (a holder that stalled past its lease) cannot
apply one twice. A new holder first reads back the seconds its rules' windows need.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from deployments.rollouts import Traffic, rollout_judge, rollouts_running
from deployments.selectors import release_live_list
from monitoring.alerts.evaluation import AlertEvaluator, in_db_thread
from monitoring.recorder import LATENCY_BOUNDS, bucket_quantile
from monitoring.selectors import drift_windows_since, metric_seconds_between
from monitoring.services import evaluator_lease_release, evaluator_lease_take, metric_seconds_prune

logger = logging.getLogger(__name__)

LEASE = "evaluator"
LEASE_SECONDS = 5.0
READ_LAG_SECONDS = 2
# Per-second rows are kept this long past the longest window a rule may have (pruned by the evaluator each minute).
KEEP_SECONDS = 2 * 3600
PRUNE_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class Judged:
    """A running rollout as the evaluator judges it: where its traffic is, and since when."""

    rollout_id: int
    step: int
    endpoint: str
    canary: int  # the rollout's version number
    primary: int
    shadow: int | None
    since: int  # the second its step started
    bake_seconds: int  # how long the step must hold


def _rollouts_judged() -> list[Judged]:
    """The running rollouts, each with its endpoint's live primary and shadow (two queries)."""
    running = rollouts_running()
    if not running:
        return []
    live = {r.endpoint_id: r for r in release_live_list().filter(endpoint_id__in=[r.endpoint_id for r in running])}
    judged = []
    for rollout in running:
        release = live.get(rollout.endpoint_id)
        if release is None:
            continue
        judged.append(
            Judged(
                rollout_id=rollout.pk,
                step=rollout.step,
                endpoint=rollout.endpoint.name,
                canary=rollout.version.number,
                primary=release.primary.number,
                shadow=release.shadow.number if release.shadow else None,
                since=int(rollout.step_started_at.timestamp()),
                bake_seconds=int(rollout.steps[rollout.step - 1]["bake_seconds"]),
            )
        )
    return judged


def _traffic(totals: tuple[int, ...] | None) -> Traffic:
    if totals is None or not totals[0]:
        return Traffic(requests=0, errors=0, disagreements=0, p95_ms=None)
    p95 = bucket_quantile(list(totals[3:]), 0.95)
    assert p95 is not None
    return Traffic(
        requests=totals[0],
        errors=totals[1],
        disagreements=totals[2],
        p95_ms=min(p95, LATENCY_BOUNDS[-1]) * 1000,  # beyond the last bucket reads as its bound
    )


class ClusterEvaluator:
    """Once a second: hold the lease, read every process's new seconds, judge the rules (see the module's note)."""

    def __init__(self, process: str) -> None:
        self.process = process
        self.leading = False
        self.alerts = AlertEvaluator()
        self._read_upto: int | None = None  # the last second read (None: not leading, or nothing read yet)
        self._drift_after: datetime | None = None
        self._pruned_at = -math.inf
        self._judged: list[Judged] = []
        self._kept: set[str] | None = None  # the endpoints kept by the last read, and how far back
        self._reach = 0

    async def tick(self, now: float) -> None:
        """Take or keep the lease; if held, read what every process wrote up to now - READ_LAG_SECONDS and judge."""
        try:
            taken = await in_db_thread(evaluator_lease_take, name=LEASE, holder=self.process, seconds=LEASE_SECONDS)
            leading = bool(taken)
        except Exception:
            logger.warning("cannot take the evaluator lease; judging nothing this second", exc_info=True)
            leading = False
        if leading != self.leading:
            logger.info("%s alert rules for the cluster", "evaluating" if leading else "another process evaluates the")
            self.leading = leading
            self.alerts = AlertEvaluator()  # a new holder starts from what is stored, not from what it once saw
            self._read_upto = None
            self._drift_after = None
        if not leading:
            return
        upto = int(now) - READ_LAG_SECONDS
        try:
            await self._read(upto)
        except Exception:
            logger.warning("cannot read the cluster's traffic; judging again next second", exc_info=True)
            return
        await self.alerts.evaluate(upto + 1)
        await self._rollouts_judge(upto)
        await self._prune(upto)

    async def _read(self, upto: int) -> None:
        await self.alerts.rules_refresh()
        self._judged = await in_db_thread(_rollouts_judged)
        # Their endpoints' traffic is kept as long as their steps bake, and a minute more (a judge that waits for
        # the minimum requests can look past the bake time).
        horizon = max((judged.bake_seconds + 60 for judged in self._judged), default=0)
        self.alerts.watch({judged.endpoint for judged in self._judged}, horizon)
        # A new rule or rollout (another endpoint, or a longer window) needs seconds already read past and dropped:
        # read its horizon again, from a clean slate (what was fired stays fired).
        watched, reach = self.alerts.watched, self.alerts.horizon
        if self._read_upto is not None and (
            reach > self._reach or (watched is not None and not watched <= (self._kept or set()))
        ):
            self.alerts.forget_traffic()
            self._read_upto = None
        self._kept, self._reach = watched, reach
        first = self._read_upto if self._read_upto is not None else upto - self.alerts.horizon
        if upto > first:
            seconds = await in_db_thread(metric_seconds_between, after=first, upto=upto)
            for second in sorted(seconds):
                self.alerts.observe(second, seconds[second])
            self.alerts.observe(upto, {})  # quiet seconds age the windows too
        if self._drift_after is None:
            self._drift_after = datetime.fromtimestamp(first, tz=UTC) - timedelta(minutes=1)
        for ended_at, endpoint, version, rows, psi in await in_db_thread(drift_windows_since, after=self._drift_after):
            self.alerts.observe_drift(int(ended_at.timestamp()) - 1, {(endpoint, version): (rows, psi)})
            self._drift_after = max(self._drift_after, ended_at)
        self._read_upto = max(upto, first)

    async def _rollouts_judge(self, upto: int) -> None:
        moment = datetime.fromtimestamp(upto + 1, tz=UTC)  # the end of the last second read
        for judged in self._judged:
            if judged.since > upto:
                continue  # its step started after the last second read
            first, name = judged.since, judged.endpoint
            drift = self.alerts.drift(judged.endpoint, judged.canary)
            shadow = None
            if judged.shadow is not None:
                shadow = _traffic(self.alerts.totals((name, judged.shadow, "shadow"), first, upto))
            try:
                changed = await in_db_thread(
                    rollout_judge,
                    rollout_id=judged.rollout_id,
                    step=judged.step,
                    canary=_traffic(self.alerts.totals((name, judged.canary, "canary"), first, upto)),
                    primary=_traffic(self.alerts.totals((name, judged.primary, "primary"), first, upto)),
                    shadow=shadow,
                    drift_psi=drift[2] if drift is not None and drift[0] >= judged.since else None,
                    now=moment,
                )
            except Exception:
                logger.warning("cannot judge rollout %d; again next second", judged.rollout_id, exc_info=True)
                continue
            if changed is not None:
                logger.info("rollout %d on %s: %s", judged.rollout_id, judged.endpoint, changed.state)

    async def _prune(self, upto: int) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = time.monotonic()
        try:
            await in_db_thread(metric_seconds_prune, before_second=upto - KEEP_SECONDS)
        except Exception:
            logger.warning("cannot prune per-second metrics", exc_info=True)

    async def stop(self) -> None:
        """Hand the lease over now (a process shutting down): another process judges from its next second."""
        if self.leading:
            try:
                await in_db_thread(evaluator_lease_release, name=LEASE, holder=self.process)
            except Exception:
                logger.warning("cannot release the evaluator lease; it lapses in %.0f s", LEASE_SECONDS, exc_info=True)
            self.leading = False
