"""Once a second, take the recorder's window and publish it: live stream, Prometheus, and minute rollups.

Runs as an asyncio task on the web process's event loop (the recorder's thread), so swapping the window needs no
lock. Nothing here can fail a request: a channel layer (Redis) that is away costs that second's live message,
counted in `gaps`; a database that is away keeps the finished minutes for the next try (up to an hour of them).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from monitoring.alerts.cluster import ClusterEvaluator
from monitoring.drift import DriftMonitor, drift_monitor
from monitoring.publish import endpoint_metrics_publish
from monitoring.recorder import (
    LATENCY_BOUNDS_MS,
    ProtocolSeriesKey,
    Recorder,
    Series,
    SeriesKey,
    recorder,
    series_by_version,
)
from monitoring.services import drift_windows_save, metric_minutes_save, metric_seconds_save

logger = logging.getLogger(__name__)

# Input drift is computed over windows of this many seconds (enough sampled rows for a stable PSI).
DRIFT_WINDOW_SECONDS = 60
MAX_PENDING_MINUTES = 60 * 50  # about an hour of minutes for a few dozen series, if the database stays away


def _ms(seconds: float | None) -> float | None:
    # Past the last bucket (over 10 s) there is no number to give, and JSON has no Infinity: null.
    return None if seconds is None or math.isinf(seconds) else round(seconds * 1000, 4)


def window_payload(endpoint: str, second: int, process: str, series: dict[SeriesKey, Series]) -> dict[str, Any]:
    """The live message for one endpoint's second (what /ws/endpoints/{name}/ sends).

    Each web process sends its own message for the same second: counts and latency buckets add up across them,
    and the quantiles of several processes or seconds are estimated from the summed buckets (`bounds_ms`)."""
    return {
        "endpoint": endpoint,
        "second": second,
        "process": process,
        "bounds_ms": list(LATENCY_BOUNDS_MS),
        "versions": [
            {
                "version": version,
                "role": role,
                "count": s.count,
                "errors": s.errors,
                "client_errors": s.client_errors,
                "disagreements": s.disagreements,
                "latency_buckets": s.latency_buckets,
                "p50_ms": _ms(s.quantile(0.5)),
                "p95_ms": _ms(s.quantile(0.95)),
                "p99_ms": _ms(s.quantile(0.99)),
                "mean_ms": _ms(s.latency_sum / s.count if s.count else None),
                "rows": s.rows,
                "codes": {str(code): n for code, n in sorted(s.codes.items())},
            }
            for (_, version, role), s in sorted(series.items())
        ],
    }


def _minute_of(second: int) -> datetime:
    return datetime.fromtimestamp(second - second % 60, tz=UTC)


def _save_drift(drift: dict[tuple[str, int], tuple[int, dict[str, float]]], ended_at: datetime, process: str) -> None:
    close_old_connections()
    try:
        drift_windows_save(taken=drift, ended_at=ended_at, process=process)
    finally:
        close_old_connections()


def _save_minutes(minutes: dict[tuple[SeriesKey, datetime], Series], process: str) -> None:
    close_old_connections()
    try:
        metric_minutes_save(minutes=minutes, process=process)
    finally:
        close_old_connections()


def _save_seconds(seconds: dict[tuple[SeriesKey, int], Series], process: str) -> None:
    close_old_connections()
    try:
        metric_seconds_save(seconds=seconds, process=process)
    finally:
        close_old_connections()


class Flusher:
    """Publish the recorder's windows every second; write each finished minute to the database."""

    def __init__(self, source: Recorder, process: str | None = None, drift: DriftMonitor | None = None) -> None:
        self.recorder = source
        self.drift = drift if drift is not None else drift_monitor
        self._drift_window: int | None = None
        self.process = process or f"{socket.gethostname()}:{os.getpid()}"
        self.gaps = 0
        self._minutes: dict[tuple[SeriesKey, datetime], Series] = {}
        self._task: asyncio.Task[None] | None = None
        # Alert rules are judged once for the cluster, by whichever process holds the evaluator lease.
        self.evaluator = ClusterEvaluator(self.process)

    def start(self) -> None:
        """Start flushing on the running loop (once)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="monitoring-flusher")

    async def stop(self) -> None:
        """Stop, publishing what is recorded and writing every minute, the current one included."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.flush(time.time() + 1, final=True)
        await self.evaluator.stop()

    async def _run(self) -> None:
        while True:
            now = time.time()
            await asyncio.sleep(1.0 - (now % 1.0))  # on whole seconds, so every process's seconds line up
            try:
                # The loop may wake a hair before the second: rounded, that second is not named twice (one window
                # drawn twice as large, the next one missing).
                await self.flush(float(round(time.time())))
            except Exception:  # monitoring must never stop: log and go on with the next second
                logger.exception("monitoring flush failed")
            try:
                await self.evaluator.tick(time.time())
            except Exception:
                logger.exception("alert evaluation failed")

    async def flush(self, now: float, final: bool = False) -> None:
        """Publish the window that ended at `now` and write the minutes that are over."""
        by_protocol = self.recorder.swap_by_protocol()
        window = series_by_version(by_protocol)
        second = int(now) - 1  # the window holds what was answered during the second that just ended
        drift = self._drift_take(second, final)
        if window:
            # For the cluster's evaluator (monitoring/alerts/cluster.py): written before the minutes below merge
            # into these series. A database that is away costs the evaluator these seconds, never the flush.
            try:
                await sync_to_async(_save_seconds, thread_sensitive=False)(
                    {(key, second): series for key, series in window.items()}, self.process
                )
            except Exception:
                logger.warning("cannot store the second %d for the evaluator", second, exc_info=True)
        if drift:
            await self._drift_publish(second, drift)
        if window:
            await self._publish(second, window)
            self._prometheus(by_protocol)
            minute = _minute_of(second)
            for key, series in window.items():
                kept = self._minutes.get((key, minute))
                if kept is None:
                    self._minutes[(key, minute)] = series
                else:
                    kept.merge(series)
        current = _minute_of(second)
        finished = {k: v for k, v in self._minutes.items() if final or k[1] < current}
        if finished:
            try:
                await sync_to_async(_save_minutes, thread_sensitive=False)(finished, self.process)
            except Exception:
                logger.warning("cannot store %d metric minutes yet; will retry", len(finished), exc_info=True)
                if len(self._minutes) > MAX_PENDING_MINUTES:
                    self._minutes.clear()
                return
            for done in finished:
                self._minutes.pop(done, None)

    def _drift_take(self, second: int, final: bool) -> dict[tuple[str, int], tuple[int, dict[str, float]]]:
        """Every DRIFT_WINDOW_SECONDS (and at the end), the drift of each version since the last window."""
        window = second // DRIFT_WINDOW_SECONDS
        if not final and window == self._drift_window:
            return {}
        self._drift_window = window
        return self.drift.take()

    async def _drift_publish(self, second: int, drift: dict[tuple[str, int], tuple[int, dict[str, float]]]) -> None:
        by_endpoint: dict[str, list[dict[str, Any]]] = {}
        for (endpoint, version), (rows, values) in sorted(drift.items()):
            by_endpoint.setdefault(endpoint, []).append({"version": version, "rows": rows, "psi": values})
        for endpoint, versions in by_endpoint.items():
            message = {
                "endpoint": endpoint,
                "second": second,
                "process": self.process,
                "versions": [],
                "drift": versions,
            }
            try:
                await endpoint_metrics_publish(endpoint=endpoint, metrics=message)
            except Exception:
                self.gaps += 1
                logger.warning("drift for %s not published (gap %d)", endpoint, self.gaps, exc_info=True)
        ended_at = datetime.fromtimestamp(second + 1, tz=UTC)
        try:
            await sync_to_async(_save_drift, thread_sensitive=False)(drift, ended_at, self.process)
        except Exception:  # history of drift is best effort: the live value and the alert rules already saw it
            logger.warning("cannot store drift windows", exc_info=True)

    async def _publish(self, second: int, window: dict[SeriesKey, Series]) -> None:
        by_endpoint: dict[str, dict[SeriesKey, Series]] = {}
        for key, series in window.items():
            by_endpoint.setdefault(key[0], {})[key] = series
        for endpoint, endpoint_series in by_endpoint.items():
            try:
                await endpoint_metrics_publish(
                    endpoint=endpoint, metrics=window_payload(endpoint, second, self.process, endpoint_series)
                )
            except Exception:  # Redis away: serving goes on, the gap is counted
                self.gaps += 1
                logger.warning("live metrics for %s not published (gap %d)", endpoint, self.gaps, exc_info=True)

    def _prometheus(self, window: dict[ProtocolSeriesKey, Series]) -> None:
        try:
            from monitoring.prometheus import inference_add

            inference_add(window)
        except Exception:
            logger.warning("prometheus update failed", exc_info=True)


flusher = Flusher(recorder)
