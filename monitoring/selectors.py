"""Reads of the monitoring app."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from deployments.models import Endpoint
from monitoring.models import DriftWindow, MetricMinute, MetricSecond, WorkerHeartbeat
from monitoring.recorder import LATENCY_BOUNDS_MS, Series, SeriesKey


def worker_status() -> dict[str, Any]:
    """Summarise the freshest worker heartbeat: ok, stale, or unknown when no worker ever reported."""
    latest = WorkerHeartbeat.objects.order_by("-last_seen").first()
    if latest is None:
        return {"status": "unknown", "detail": "No worker has reported yet."}
    age = timezone.now() - latest.last_seen
    fresh = age <= timedelta(seconds=settings.MODELDECK_WORKER_STALE_SECONDS)
    return {
        "status": "ok" if fresh else "stale",
        "worker": latest.worker,
        "last_seen": latest.last_seen.isoformat(),
        "age_seconds": round(age.total_seconds(), 1),
    }


@dataclass(frozen=True)
class HistoryRange:
    span: timedelta
    bucket_seconds: int


# How far back each history range reaches, and how wide its buckets are (about 60 to 170 points a series).
HISTORY_RANGES: dict[str, HistoryRange] = {
    "1h": HistoryRange(timedelta(hours=1), 60),
    "1d": HistoryRange(timedelta(days=1), 600),
    "1w": HistoryRange(timedelta(weeks=1), 3600),
}
_ROLE_ORDER = {"primary": 0, "canary": 1, "shadow": 2}


def _ms(seconds: float | None) -> float | None:
    # Beyond the last finite bucket there is no upper bound to report: null rather than a made-up number.
    return None if seconds is None or math.isinf(seconds) else round(seconds * 1000, 4)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def metric_history(*, endpoint: Endpoint, range_name: str, now: datetime | None = None) -> dict[str, Any]:
    """Sum an endpoint's minute rows (every process's) into buckets per version and role, with the range's releases.

    One query for the metric rows and one for the releases; percentiles are estimated from the summed latency
    buckets (within the bucket, as Prometheus does), however many processes wrote rows, and each point keeps its
    buckets so a client can merge points itself. 4xx answers are counted apart from 5xx. Buckets without traffic
    are left out.
    """
    window = HISTORY_RANGES[range_name]
    bucket = window.bucket_seconds
    now_epoch = int((now or timezone.now()).timestamp())
    # The newest bucket is the one still filling; the range holds exactly span / bucket buckets.
    start = datetime.fromtimestamp(now_epoch - now_epoch % bucket + bucket, tz=UTC) - window.span
    rows = MetricMinute.objects.filter(endpoint=endpoint, minute__gte=start).values_list(
        "version",
        "role",
        "minute",
        "count",
        "errors",
        "disagreements",
        "latency_sum",
        "rows",
        "latency_buckets",
        "codes",
    )
    buckets: dict[tuple[int, str], dict[int, Series]] = {}
    for row in rows.iterator():
        version, role, minute, count, errors, disagreements, latency_sum, n_rows, latency_buckets, codes = row
        epoch = int(minute.timestamp())
        summed = buckets.setdefault((version, role), {}).setdefault(epoch - epoch % bucket, Series())
        summed.merge(
            Series(
                count=count,
                errors=errors,
                client_errors=sum(n for code, n in codes.items() if 400 <= int(code) < 500),
                disagreements=disagreements,
                latency_sum=latency_sum,
                rows=n_rows,
                latency_buckets=list(latency_buckets),
            )
        )
    releases = endpoint.releases.filter(created_at__gte=start).select_related("primary", "canary", "shadow")
    return {
        "endpoint": endpoint.name,
        "range": range_name,
        "bucket_seconds": bucket,
        "bounds_ms": list(LATENCY_BOUNDS_MS),
        "series": [
            {
                "version": version,
                "role": role,
                "points": [
                    {
                        "t": _iso(datetime.fromtimestamp(t, tz=UTC)),
                        "count": s.count,
                        "errors": s.errors,
                        "client_errors": s.client_errors,
                        "disagreements": s.disagreements,
                        "latency_buckets": s.latency_buckets,
                        "p50_ms": _ms(s.quantile(0.5)),
                        "p95_ms": _ms(s.quantile(0.95)),
                        "p99_ms": _ms(s.quantile(0.99)),
                    }
                    for t, s in sorted(points.items())
                ],
            }
            for (version, role), points in sorted(
                buckets.items(), key=lambda kv: (kv[0][0], _ROLE_ORDER.get(kv[0][1], 9))
            )
        ],
        "releases": [
            {
                "number": r.number,
                "action": r.action,
                "primary": r.primary.number,
                "canary": r.canary.number if r.canary else None,
                "canary_percent": r.canary_percent,
                "shadow": r.shadow.number if r.shadow else None,
                "at": _iso(r.created_at),
            }
            for r in releases.order_by("number")
        ],
    }


def drift_latest(*, endpoint: Endpoint) -> list[dict[str, Any]]:
    """The newest drift window of each version of the endpoint (any process), version order."""
    newest: dict[int, DriftWindow] = {}
    recent = DriftWindow.objects.filter(endpoint=endpoint, ended_at__gte=timezone.now() - timedelta(days=1))
    for window in recent.order_by("-ended_at")[:500]:
        newest.setdefault(window.version, window)
    return [
        {"version": v, "rows": w.rows, "psi": w.psi, "ended_at": _iso(w.ended_at), "process": w.process}
        for v, w in sorted(newest.items())
    ]


def metric_seconds_between(*, after: int, upto: int) -> dict[int, dict[SeriesKey, Series]]:
    """Every process's per-second rows with `after < second <= upto`, summed per second and series (one query)."""
    rows = MetricSecond.objects.filter(second__gt=after, second__lte=upto).values_list(
        "endpoint__name",
        "version",
        "role",
        "second",
        "count",
        "errors",
        "client_errors",
        "disagreements",
        "latency_buckets",
    )
    seconds: dict[int, dict[SeriesKey, Series]] = {}
    for name, version, role, second, count, errors, client_errors, disagreements, latency_buckets in rows.iterator():
        row = Series(
            count=count,
            errors=errors,
            client_errors=client_errors,
            disagreements=disagreements,
            latency_buckets=list(latency_buckets),
        )
        window = seconds.setdefault(second, {})
        kept = window.get((name, version, role))
        if kept is None:
            window[(name, version, role)] = row
        else:
            kept.merge(row)
    return seconds


def drift_windows_since(*, after: datetime) -> list[tuple[datetime, str, int, int, dict[str, float]]]:
    """Drift windows every process stored after `after`: (ended_at, endpoint, version, rows, psi), oldest first."""
    return list(
        DriftWindow.objects.filter(ended_at__gt=after)
        .order_by("ended_at")
        .values_list("ended_at", "endpoint__name", "version", "rows", "psi")
    )
