"""Widen stored minutes' latency buckets to the bounds that start at 10 µs.

Minutes written before held 17 counts (16 bounds from 100 µs, then +Inf); three bounds below 100 µs came first in
the new list. Requests under 100 µs were counted in the old first bucket and cannot be split now: they stay in the
100 µs bucket, and the three new ones are zero (the estimate reads them as spread between 50 and 100 µs).
"""

from django.db import migrations

OLD_WIDTH = 17
ADDED = 3


def widen(apps, schema_editor):
    MetricMinute = apps.get_model("monitoring", "MetricMinute")
    changed = []
    for row in MetricMinute.objects.only("pk", "latency_buckets").iterator(chunk_size=2000):
        if len(row.latency_buckets) == OLD_WIDTH:
            row.latency_buckets = [0] * ADDED + list(row.latency_buckets)
            changed.append(row)
        if len(changed) >= 2000:
            MetricMinute.objects.bulk_update(changed, ["latency_buckets"])
            changed = []
    MetricMinute.objects.bulk_update(changed, ["latency_buckets"])


def narrow(apps, schema_editor):
    MetricMinute = apps.get_model("monitoring", "MetricMinute")
    changed = []
    for row in MetricMinute.objects.only("pk", "latency_buckets").iterator(chunk_size=2000):
        if len(row.latency_buckets) == OLD_WIDTH + ADDED:
            buckets = list(row.latency_buckets)
            row.latency_buckets = [sum(buckets[: ADDED + 1]), *buckets[ADDED + 1 :]]
            changed.append(row)
        if len(changed) >= 2000:
            MetricMinute.objects.bulk_update(changed, ["latency_buckets"])
            changed = []
    MetricMinute.objects.bulk_update(changed, ["latency_buckets"])


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0004_drift")]

    operations = [migrations.RunPython(widen, narrow, elidable=True)]
