"""Inference recording: the hot path counts each answer, the flusher publishes seconds and stores minutes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connections

from common.channel_groups import endpoint_group
from deployments.services import release_promote
from monitoring.drift import DriftMonitor, DriftReference
from monitoring.flusher import Flusher, window_payload
from monitoring.models import DriftWindow, MetricMinute
from monitoring.recorder import LATENCY_BOUNDS, Recorder, Series, recorder, series_by_version
from serving.router import router_get
from teams.choices import Role
from teams.permissions import Actor
from tests.serving.conftest import Deployed

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_window() -> None:
    recorder.swap()


@pytest.fixture
async def _close_db_threads() -> AsyncIterator[None]:
    yield
    # The ORM ran in asgiref's shared thread: close that connection before the test database is dropped.
    await sync_to_async(connections.close_all, thread_sensitive=True)()


def body(rows: int) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": [0.5] * (4 * rows)}]}


def test_recorder_counts_codes_rows_and_latency_buckets() -> None:
    rec = Recorder()
    rec.record("iris", 1, "primary", 200, 0.0003, 2)
    rec.record("iris", 1, "primary", 200, 0.0007, 1)
    rec.record("iris", 1, "primary", 503, 0.004, 1)
    rec.record("iris", 2, "canary", 200, 0.0001, 1)
    rec.record("iris", 2, "canary", 422, 0.0001, 1)
    window = rec.swap()
    assert rec.swap() == {}
    primary = window[("iris", 1, "primary")]
    assert (primary.count, primary.errors, primary.client_errors, primary.rows) == (3, 1, 0, 4)
    assert primary.codes == {200: 2, 503: 1}
    assert primary.latency_sum == pytest.approx(0.005)
    # 0.3 ms falls in the 0.5 ms bucket, 0.7 ms in the 1 ms one, 4 ms in the 5 ms one.
    expected = [0] * (len(LATENCY_BOUNDS) + 1)
    expected[LATENCY_BOUNDS.index(0.0005)] = 1
    expected[LATENCY_BOUNDS.index(0.001)] = 1
    expected[LATENCY_BOUNDS.index(0.005)] = 1
    assert primary.latency_buckets == expected
    # Within its bucket: the median is the middle one of 3, alone in (0.5, 1] ms, so halfway: 0.75 ms; the p99 is
    # 97 % of the way through the (2.5, 5] ms bucket: 4.925 ms.
    assert primary.quantile(0.5) == pytest.approx(0.00075)
    assert primary.quantile(0.99) == pytest.approx(0.004925)
    canary = window[("iris", 2, "canary")]
    assert (canary.count, canary.errors, canary.client_errors) == (2, 0, 1)  # a 4xx is the caller's, not an error
    assert canary.latency_buckets[LATENCY_BOUNDS.index(0.0001)] == 2  # exactly on a bound counts in that bucket


@pytest.fixture
def releaser(deployed: Deployed, make_member) -> Actor:
    return Actor(user=make_member(team=deployed.dev.team, role=Role.DEVELOPER, username="releaser").user)


async def test_answers_are_recorded_per_version_and_role_with_their_status(
    deployed: Deployed, client: httpx.AsyncClient, releaser: Actor
) -> None:
    for rows in (1, 2, 3):
        assert (await client.post("/v2/models/iris/infer", json=body(rows), headers=deployed.auth())).status_code == 200
    assert (
        await client.post("/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4]]}, headers=deployed.auth())
    ).status_code == 200
    bad = {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [0] * 5}]}
    assert (await client.post("/v2/models/iris/infer", json=bad, headers=deployed.auth())).status_code == 400
    # Refused before a version is chosen: nothing to record against a version.
    assert (await client.post("/v2/models/iris/infer", json=body(1))).status_code == 401
    assert (await client.post("/v2/models/nope/infer", json=body(1), headers=deployed.auth())).status_code == 404

    window = recorder.swap()
    assert set(window) == {("iris", 1, "primary")}
    series = window[("iris", 1, "primary")]
    assert (series.count, series.errors, series.rows, series.codes) == (5, 0, 7, {200: 4, 400: 1})

    # A shadow copy is recorded as the shadow's own request, off the caller's path.
    await sync_to_async(release_promote)(
        actor=releaser, endpoint=deployed.private, version=deployed.versions[1], shadow_version=deployed.versions[2]
    )
    await sync_to_async(router_get()._refresh_closing, thread_sensitive=True)()
    assert (await client.post("/v2/models/iris/infer", json=body(2), headers=deployed.auth())).status_code == 200
    router_get().shadow.drain()
    deadline = time.monotonic() + 5
    seen: dict[tuple[str, int, str], Series] = {}
    while ("iris", 2, "shadow") not in seen and time.monotonic() < deadline:
        await _yield()
        for key, value in recorder.swap().items():
            seen.setdefault(key, Series()).merge(value)
    assert seen[("iris", 2, "shadow")].count == 1
    assert seen[("iris", 2, "shadow")].rows == 2
    x = np.full((2, 4), 0.5, dtype=np.float32)
    differs = bool((deployed.expected(1, x).argmax(axis=1) != deployed.expected(2, x).argmax(axis=1)).any())
    assert seen[("iris", 2, "shadow")].disagreements == int(differs)
    assert seen[("iris", 1, "primary")].count == 1


async def _yield() -> None:
    await asyncio.sleep(0.01)


@pytest.mark.usefixtures("_close_db_threads")
async def test_flusher_publishes_each_second_and_stores_finished_minutes(deployed: Deployed) -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(endpoint_group("iris"), channel)
    rec = Recorder()
    flusher = Flusher(rec, process="test:1")
    minute = 1_800_000_000 - 1_800_000_000 % 60  # a whole minute, as epoch seconds

    rec.record("iris", 1, "primary", 200, 0.0004, 1)
    rec.record("iris", 1, "primary", 200, 0.0004, 3)
    await flusher.flush(minute + 11)
    message = await layer.receive(channel)
    assert message["type"] == "endpoint.metrics"
    assert message["metrics"] == {
        "endpoint": "iris",
        "second": minute + 10,
        "process": "test:1",
        "bounds_ms": [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
        "versions": [
            {
                "version": 1,
                "role": "primary",
                "count": 2,
                "errors": 0,
                "client_errors": 0,
                "disagreements": 0,
                "latency_buckets": [0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                # Both in (0.25, 0.5] ms, taken as spread evenly over it.
                "p50_ms": 0.375,
                "p95_ms": 0.4875,
                "p99_ms": 0.4975,
                "mean_ms": 0.4,
                "rows": 4,
                "codes": {"200": 2},
            }
        ],
    }
    assert await sync_to_async(MetricMinute.objects.count)() == 0  # the minute is not over yet

    rec.record("iris", 1, "primary", 500, 0.02, 1)
    await flusher.flush(minute + 31)
    await layer.receive(channel)
    rec.record("iris", 1, "primary", 200, 0.001, 1)
    await flusher.flush(minute + 61)  # the first second of the next minute: the previous one is written
    await layer.receive(channel)
    rows = await sync_to_async(lambda: list(MetricMinute.objects.order_by("minute").values()))()
    assert len(rows) == 1
    row = rows[0]
    assert row["minute"] == datetime.fromtimestamp(minute, tz=UTC)
    assert (row["version"], row["role"], row["process"], row["endpoint_id"]) == (
        1,
        "primary",
        "test:1",
        deployed.private.pk,
    )
    assert (row["count"], row["errors"], row["rows"], row["codes"]) == (3, 1, 5, {"200": 2, "500": 1})
    await flusher.stop()  # writes the current minute too
    assert await sync_to_async(MetricMinute.objects.count)() == 2


async def test_a_broken_layer_or_database_costs_a_gap_never_a_request(deployed: Deployed, monkeypatch) -> None:
    async def layer_down(**kwargs: object) -> None:
        raise ConnectionError("redis is away")

    monkeypatch.setattr("monitoring.flusher.endpoint_metrics_publish", layer_down)
    saves: list[int] = []

    def database_down(minutes: dict, process: str) -> None:
        saves.append(len(minutes))
        if len(saves) == 1:
            raise ConnectionError("database is away")

    monkeypatch.setattr("monitoring.flusher._save_minutes", database_down)
    rec = Recorder()
    flusher = Flusher(rec, process="test:2")
    rec.record("iris", 1, "primary", 200, 0.001, 1)
    await flusher.flush(1_800_000_000 + 1)
    assert flusher.gaps == 1
    await flusher.flush(1_800_000_000 + 61)  # the minute is over: the first save fails and is kept
    await flusher.flush(1_800_000_000 + 62)  # and written on the next second
    assert saves == [1, 1]


def test_window_payload_reports_each_version_of_an_endpoint() -> None:
    rec = Recorder()
    rec.record("iris", 2, "canary", 200, 0.002, 1)
    rec.record("iris", 1, "primary", 200, 0.0002, 1)
    payload = window_payload("iris", 5, "p", rec.swap())
    assert [(v["version"], v["role"], v["p50_ms"]) for v in payload["versions"]] == [
        (1, "primary", 0.175),  # halfway through (0.1, 0.25] ms
        (2, "canary", 1.75),  # halfway through (1, 2.5] ms
    ]


def test_latency_past_the_last_bucket_is_null_not_infinity() -> None:
    rec = Recorder()
    rec.record("iris", 1, "primary", 200, 20.0, 1)
    (version,) = window_payload("iris", 5, "p", rec.swap())["versions"]
    assert (version["p50_ms"], version["p99_ms"], version["mean_ms"]) == (None, None, 20000.0)


@pytest.mark.usefixtures("_close_db_threads")
async def test_flusher_publishes_and_stores_drift_once_per_window(deployed: Deployed) -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(endpoint_group("iris"), channel)
    rng = np.random.default_rng(0)
    reference = DriftReference.from_sample({"x": rng.normal(size=(500, 4)).astype(np.float32)})
    drift = DriftMonitor(sample_rate=1.0)
    flusher = Flusher(Recorder(), process="test:3", drift=drift)
    start = 1_800_000_000 - 1_800_000_000 % 60
    await flusher.flush(start + 1)  # opens the first drift window
    shifted = rng.normal(size=(300, 4)).astype(np.float32) + np.array([0, 0, 3, 0], dtype=np.float32)
    drift.observe("iris", 1, reference, {"x": shifted})
    await flusher.flush(start + 30)  # the same window: nothing taken yet
    await flusher.flush(start + 61)
    message = (await layer.receive(channel))["metrics"]
    assert (message["second"], message["versions"]) == (start + 60, [])
    [entry] = message["drift"]
    assert (entry["version"], entry["rows"]) == (1, 300)
    assert entry["psi"]["x[2]"] > 1 and entry["psi"]["x[0]"] < 0.1
    [row] = await sync_to_async(lambda: list(DriftWindow.objects.values("version", "rows", "psi", "process")))()
    assert row == {"version": 1, "rows": 300, "psi": entry["psi"], "process": "test:3"}


def test_protocols_are_recorded_apart_and_merged_for_the_version_views() -> None:
    rec = Recorder()
    rec.record("iris", 1, "primary", 200, 0.0003, 2)
    rec.record("iris", 1, "primary", 400, 0.0003, 1, protocol="grpc")
    rec.record("iris", 2, "canary", 200, 0.0003, 1, protocol="grpc")
    by_protocol = rec.swap_by_protocol()
    assert sorted(by_protocol) == [
        ("iris", 1, "primary", "grpc"),
        ("iris", 1, "primary", "http"),
        ("iris", 2, "canary", "grpc"),
    ]
    merged = series_by_version(by_protocol)
    assert sorted(merged) == [("iris", 1, "primary"), ("iris", 2, "canary")]
    assert (merged[("iris", 1, "primary")].count, merged[("iris", 1, "primary")].codes) == (2, {200: 1, 400: 1})
    # The split window is left as it was (Prometheus reads it after the merge).
    assert by_protocol[("iris", 1, "primary", "http")].count == 1
    assert by_protocol[("iris", 1, "primary", "grpc")].count == 1
    # A version over one protocol keeps its own series object: no copy on the common path.
    assert merged[("iris", 2, "canary")] is by_protocol[("iris", 2, "canary", "grpc")]
