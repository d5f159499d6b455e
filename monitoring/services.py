"""Writes of the monitoring app."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from deployments.models import Endpoint
from monitoring.models import DriftWindow, EvaluatorLease, MetricMinute, MetricSecond, WorkerHeartbeat
from monitoring.recorder import Series, SeriesKey


def worker_heartbeat_record(*, worker: str) -> WorkerHeartbeat:
    """Note that a worker is alive now."""
    heartbeat, _ = WorkerHeartbeat.objects.update_or_create(worker=worker, defaults={"last_seen": timezone.now()})
    return heartbeat


def metric_minutes_save(*, minutes: dict[tuple[SeriesKey, datetime], Series], process: str) -> int:
    """Store one process's finished minutes (a retry of the same minute overwrites, never double counts)."""
    names = {key[0] for key, _ in minutes}
    endpoint_ids = dict(Endpoint.objects.filter(name__in=names).values_list("name", "pk"))
    rows = [
        MetricMinute(
            endpoint_id=endpoint_ids[endpoint],
            version=version,
            role=role,
            minute=minute,
            process=process,
            count=series.count,
            errors=series.errors,
            disagreements=series.disagreements,
            latency_sum=series.latency_sum,
            rows=series.rows,
            latency_buckets=series.latency_buckets,
            codes={str(code): n for code, n in series.codes.items()},
        )
        for ((endpoint, version, role), minute), series in minutes.items()
        if endpoint in endpoint_ids  # an endpoint deleted since keeps no history
    ]
    MetricMinute.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["endpoint", "version", "role", "minute", "process"],
        update_fields=["count", "errors", "disagreements", "latency_sum", "rows", "latency_buckets", "codes"],
    )
    return len(rows)


def metric_minutes_prune(*, older_than: timedelta) -> int:
    """Delete minute rollups older than the retention."""
    deleted, _ = MetricMinute.objects.filter(minute__lt=timezone.now() - older_than).delete()
    return deleted


def drift_windows_save(
    *, taken: dict[tuple[str, int], tuple[int, dict[str, float]]], ended_at: datetime, process: str
) -> int:
    """Store one process's drift window: rows sampled and PSI per feature, per endpoint version."""
    endpoint_ids = dict(Endpoint.objects.filter(name__in={name for name, _ in taken}).values_list("name", "pk"))
    rows = [
        DriftWindow(
            endpoint_id=endpoint_ids[name], version=version, ended_at=ended_at, process=process, rows=n, psi=values
        )
        for (name, version), (n, values) in taken.items()
        if name in endpoint_ids
    ]
    DriftWindow.objects.bulk_create(rows)
    return len(rows)


def metric_seconds_save(*, seconds: dict[tuple[SeriesKey, int], Series], process: str) -> int:
    """Store one process's seconds for the cluster evaluator (a second written again overwrites, never adds)."""
    names = {key[0] for key, _ in seconds}
    endpoint_ids = dict(Endpoint.objects.filter(name__in=names).values_list("name", "pk"))
    rows = [
        MetricSecond(
            endpoint_id=endpoint_ids[endpoint],
            version=version,
            role=role,
            second=second,
            process=process,
            count=series.count,
            errors=series.errors,
            client_errors=series.client_errors,
            disagreements=series.disagreements,
            latency_buckets=series.latency_buckets,
        )
        for ((endpoint, version, role), second), series in seconds.items()
        if endpoint in endpoint_ids
    ]
    MetricSecond.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["endpoint", "version", "role", "second", "process"],
        update_fields=["count", "errors", "client_errors", "disagreements", "latency_buckets"],
    )
    return len(rows)


def metric_seconds_prune(*, before_second: int) -> int:
    """Delete per-second rows older than the evaluator can need."""
    deleted, _ = MetricSecond.objects.filter(second__lt=before_second).delete()
    return deleted


def evaluator_lease_take(*, name: str, holder: str, seconds: float, now: datetime | None = None) -> bool:
    """Take or renew the lease `name` for `holder` until `seconds` from now; False while another holds it.

    One conditional UPDATE decides: it succeeds for the holder, or for anyone once the lease has lapsed, so two
    processes racing for a lapsed lease cannot both get it (the loser's UPDATE matches no row once it is taken)."""
    now = now or timezone.now()
    until = now + timedelta(seconds=seconds)
    mine_or_lapsed = Q(holder=holder) | Q(expires_at__lt=now)
    if EvaluatorLease.objects.filter(mine_or_lapsed, name=name).update(holder=holder, expires_at=until):
        return True
    try:
        with transaction.atomic():
            EvaluatorLease.objects.create(name=name, holder=holder, expires_at=until)
    except IntegrityError:
        return False  # it exists, held by another
    return True


def evaluator_lease_release(*, name: str, holder: str) -> None:
    """Give the lease up now (a process shutting down), so another takes over at its next second."""
    EvaluatorLease.objects.filter(name=name, holder=holder).update(expires_at=timezone.now() - timedelta(seconds=1))
