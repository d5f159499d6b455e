"""Latency quantiles estimated within buckets fine enough for sub-millisecond models, and stored minutes widened."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime

import pytest
from django.apps import apps

from deployments.services import endpoint_create
from monitoring.models import MetricMinute
from monitoring.recorder import LATENCY_BOUNDS, Recorder, bucket_quantile
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version


def test_a_10_microsecond_model_reads_as_such() -> None:
    # What the issue saw: a model answering in 0.01 ms had a p95 of "10 ms" (then the bucket edge past 5 ms).
    rec = Recorder()
    for i in range(100):
        rec.record("iris", 1, "primary", 200, 0.000008 + i * 0.00000005, 1)  # 8 to 13 µs
    series = rec.swap()[("iris", 1, "primary")]
    p95 = series.quantile(0.95)
    assert p95 is not None and 0.00001 < p95 < 0.000025  # in (10, 25] µs, not a bucket edge
    # 41 at or under 10 µs, 59 in (10, 25]: the 50th is the 9th of those 59.
    assert series.quantile(0.5) == pytest.approx(0.00001 + 0.000015 * 9 / 59)


def test_quantiles_move_with_the_traffic_between_bucket_edges() -> None:
    buckets = [0] * (len(LATENCY_BOUNDS) + 1)
    one_ms = LATENCY_BOUNDS.index(0.001)
    buckets[one_ms] = 100  # all in (0.5, 1] ms
    assert [bucket_quantile(buckets, q) for q in (0.1, 0.5, 0.9)] == pytest.approx([0.00055, 0.00075, 0.00095])


def test_empty_and_unbounded() -> None:
    buckets = [0] * (len(LATENCY_BOUNDS) + 1)
    assert bucket_quantile(buckets, 0.5) is None
    buckets[-1] = 3
    assert bucket_quantile(buckets, 0.5) == float("inf")
    buckets[0] = 7  # 70 % at or under 10 µs: the median is in the first bucket, which starts at zero
    assert bucket_quantile(buckets, 0.5) == pytest.approx(0.00001 * 5 / 7)
    assert bucket_quantile(buckets, 0.8) == float("inf")


@pytest.mark.django_db
@pytest.mark.usefixtures("artifact_dir")
def test_minutes_stored_with_the_old_buckets_are_widened(make_member, team_a, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    actor = Actor(user=make_member(team=team_a, role=Role.DEVELOPER).user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    endpoint = endpoint_create(actor=actor, model=model, name="iris", version=add_version(model, actor, tmp_path, 1))
    old = [5, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]  # 16 bounds from 100 µs, then +Inf
    new = [0, 0, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    minute = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    fields = {"endpoint": endpoint, "role": "primary", "count": 8, "errors": 0, "latency_sum": 0.1, "rows": 8}
    before = MetricMinute.objects.create(version=1, minute=minute, process="a", latency_buckets=old, codes={}, **fields)
    already = MetricMinute.objects.create(
        version=1, minute=minute, process="b", latency_buckets=new, codes={}, **fields
    )
    migration = importlib.import_module("monitoring.migrations.0005_latency_buckets_from_10us")

    migration.widen(apps, None)
    before.refresh_from_db()
    already.refresh_from_db()
    assert before.latency_buckets == [0, 0, 0, *old]
    assert len(before.latency_buckets) == len(LATENCY_BOUNDS) + 1
    assert already.latency_buckets == new  # rows written with the new bounds are left alone
    migration.widen(apps, None)  # and running it again changes nothing
    before.refresh_from_db()
    assert before.latency_buckets == [0, 0, 0, *old]
    migration.narrow(apps, None)
    before.refresh_from_db()
    assert before.latency_buckets == old
