"""GET /api/v1/endpoints/{name}/metrics: minute rows of every process summed into buckets, with release markers."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from django.utils import timezone

from deployments.models import Endpoint
from deployments.services import endpoint_create, release_promote
from monitoring.models import MetricMinute
from monitoring.recorder import LATENCY_BOUNDS
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.conftest import Member
from tests.deployments.test_endpoint_apis import add_version

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifact_dir")]

NOW = datetime(2026, 11, 29, 12, 34, 56, tzinfo=UTC)
URL = "/api/v1/endpoints/iris/metrics"


def _at(hour: int, minute: int, day: int = 29) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def _buckets(counts: dict[float, int]) -> list[int]:
    """Latency bucket counts from {upper bound in ms: requests} (math.inf for the bucket past the last bound)."""
    bounds = [round(bound * 1000, 4) for bound in LATENCY_BOUNDS] + [math.inf]
    buckets = [0] * len(bounds)
    for bound, n in counts.items():
        buckets[bounds.index(bound)] = n
    return buckets


def _row(endpoint: Endpoint, version: int, role: str, minute: datetime, process: str, **values: Any) -> MetricMinute:
    count = sum(values["latency_buckets"])
    errors, refused = values.get("errors", 0), values.get("client_errors", 0)
    return MetricMinute.objects.create(
        endpoint=endpoint,
        version=version,
        role=role,
        minute=minute,
        process=process,
        count=count,
        errors=errors,
        disagreements=values.get("disagreements", 0),
        latency_sum=0.001 * count,
        rows=count,
        latency_buckets=values["latency_buckets"],
        codes={"200": count - errors - refused, "500": errors, "400": refused},
    )


@pytest.fixture
def history(make_member, team_a, team_b, tmp_path, monkeypatch) -> Member:
    """Endpoint "iris" (releases at 10:00, 12:20, 12:30) with minute rows from two web processes; returns a viewer."""
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    builder = Actor(user=make_member(team=team_a, role=Role.DEVELOPER, username="builder").user)
    model = registered_model_create(actor=builder, team=team_a, name="iris")
    v = {n: add_version(model, builder, tmp_path, n) for n in (1, 2, 3, 4)}

    clock = {"now": _at(10, 0)}
    monkeypatch.setattr(timezone, "now", lambda: clock["now"])
    iris = endpoint_create(actor=builder, model=model, name="iris", version=v[1])
    other = endpoint_create(actor=builder, model=model, name="iris-other", version=v[1])
    clock["now"] = _at(12, 20)
    release_promote(actor=builder, endpoint=iris, version=v[2], reason="better")
    clock["now"] = _at(12, 30)
    release_promote(actor=builder, endpoint=iris, version=v[3], canary_percent=20, shadow_version=v[4])
    clock["now"] = NOW

    # v2 primary at 12:00 from two processes: 18 requests up to 1 ms (3 refused as 400) and 2 up to 25 ms once summed.
    _row(iris, 2, "primary", _at(12, 0), "web-1:11", errors=1, latency_buckets=_buckets({1: 10}))
    _row(iris, 2, "primary", _at(12, 0), "web-2:22", client_errors=3, latency_buckets=_buckets({1: 8, 25: 2}))
    _row(iris, 2, "primary", _at(12, 34), "web-2:22", latency_buckets=_buckets({2.5: 3}))
    # v3 canary at 12:01 and 12:02, slower than the last bound (no upper bound: null percentiles).
    _row(iris, 3, "canary", _at(12, 1), "web-1:11", errors=4, latency_buckets=_buckets({math.inf: 4}))
    _row(iris, 3, "canary", _at(12, 2), "web-2:22", latency_buckets=_buckets({5: 1}))
    # v4 shadow at 12:00: 3 of 10 answers unlike the primary's.
    _row(iris, 4, "shadow", _at(12, 0), "web-1:11", disagreements=3, latency_buckets=_buckets({5: 10}))
    # Older than the hour, older than the day, older than the week, and another endpoint's: none in the hour.
    _row(iris, 1, "primary", _at(11, 34), "web-1:11", latency_buckets=_buckets({0.5: 7}))
    _row(iris, 1, "primary", _at(11, 0, day=28), "web-1:11", latency_buckets=_buckets({0.25: 5}))
    _row(iris, 1, "primary", _at(11, 0, day=20), "web-1:11", latency_buckets=_buckets({0.25: 9}))
    _row(other, 1, "primary", _at(12, 0), "web-1:11", latency_buckets=_buckets({0.5: 9}))
    return make_member(team=team_a, role=Role.VIEWER, username="viewer")


def _point(
    t: str, buckets: dict[float, int], p50: float | None, p95: float | None, p99: float | None, **rest: int
) -> dict:
    return {
        "t": t,
        "count": sum(buckets.values()),
        "errors": rest.get("errors", 0),
        "client_errors": rest.get("client_errors", 0),
        "disagreements": rest.get("disagreements", 0),
        "latency_buckets": _buckets(buckets),
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
    }


# Quantiles are estimated within their bucket, as if its requests were spread evenly between its two bounds:
# v2 at 12:00 has 18 requests in (0.5, 1] ms and 2 in (10, 25] ms, so its median is the 10th of those 18,
# 0.5 + 0.5 * 10/18 = 0.7778 ms, and its p95 the 19th request, the 1st of 2 in (10, 25]: 10 + 15 * 1/2 = 17.5 ms.
V2_AT_12 = _point("2026-11-29T12:00:00Z", {1: 18, 25: 2}, 0.7778, 17.5, 23.5, errors=1, client_errors=3)
V2_AT_1234 = {1: 0, 2.5: 3}  # (1, 2.5] ms: p50 1 + 1.5 * 1.5/3, p95 1 + 1.5 * 2.85/3, p99 1 + 1.5 * 2.97/3
V4_SHADOW = _point("2026-11-29T12:00:00Z", {5: 10}, 3.75, 4.875, 4.975, disagreements=3)


RELEASE_2 = {
    "number": 2,
    "action": "promote",
    "primary": 2,
    "canary": None,
    "canary_percent": 0,
    "shadow": None,
    "at": "2026-11-29T12:20:00Z",
}
RELEASE_3 = {
    "number": 3,
    "action": "canary",
    "primary": 2,
    "canary": 3,
    "canary_percent": 20,
    "shadow": 4,
    "at": "2026-11-29T12:30:00Z",
}


def test_last_hour_sums_processes_per_minute(history: Member, django_assert_num_queries) -> None:
    client = history.token_client()
    client.get(URL)  # the first use of a token stamps its last_used_at: one more UPDATE, once a minute
    # Token, endpoint, membership, metric rows, releases: the same however many rows, versions or processes.
    with django_assert_num_queries(5):
        response = client.get(URL, {"range": "1h"})
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "endpoint": "iris",
        "range": "1h",
        "bucket_seconds": 60,
        "bounds_ms": [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
        "series": [
            {
                "version": 2,
                "role": "primary",
                "points": [
                    V2_AT_12,
                    _point("2026-11-29T12:34:00Z", V2_AT_1234, 1.75, 2.425, 2.485),
                ],
            },
            {
                "version": 3,
                "role": "canary",
                "points": [
                    _point("2026-11-29T12:01:00Z", {math.inf: 4}, None, None, None, errors=4),
                    _point("2026-11-29T12:02:00Z", {5: 1}, 3.75, 4.875, 4.975),
                ],
            },
            {
                "version": 4,
                "role": "shadow",
                "points": [V4_SHADOW],
            },
        ],
        "releases": [RELEASE_2, RELEASE_3],
    }


def test_last_day_uses_ten_minute_buckets(history: Member) -> None:
    response = history.session_client().get(URL, {"range": "1d"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["range"], body["bucket_seconds"]) == ("1d", 600)
    assert body["series"] == [
        {"version": 1, "role": "primary", "points": [_point("2026-11-29T11:30:00Z", {0.5: 7}, 0.375, 0.4875, 0.4975)]},
        {
            "version": 2,
            "role": "primary",
            "points": [V2_AT_12, _point("2026-11-29T12:30:00Z", V2_AT_1234, 1.75, 2.425, 2.485)],
        },
        # 4 requests beyond 10 s and 1 up to 5 ms: the median is the +Inf bucket's, which has no bound.
        {
            "version": 3,
            "role": "canary",
            "points": [_point("2026-11-29T12:00:00Z", {5: 1, math.inf: 4}, None, None, None, errors=4)],
        },
        {"version": 4, "role": "shadow", "points": [V4_SHADOW]},
    ]
    assert [r["number"] for r in body["releases"]] == [1, 2, 3]
    assert body["releases"][0]["at"] == "2026-11-29T10:00:00Z"


def test_last_week_uses_hour_buckets_and_reaches_back_seven_days(history: Member) -> None:
    body = history.token_client().get(URL, {"range": "1w"}).json()
    assert body["bucket_seconds"] == 3600
    assert body["series"][0] == {
        "version": 1,
        "role": "primary",
        "points": [
            _point("2026-11-28T11:00:00Z", {0.25: 5}, 0.175, 0.2425, 0.2485),
            _point("2026-11-29T11:00:00Z", {0.5: 7}, 0.375, 0.4875, 0.4975),
        ],
    }
    # 18 up to 1 ms, 3 up to 2.5 ms, 2 up to 25 ms: p50 0.5 + 0.5 * 11.5/18; p95 the 21.85th: 10 + 15 * 0.85/2.
    assert body["series"][1]["points"] == [
        _point("2026-11-29T12:00:00Z", {1: 18, 2.5: 3, 25: 2}, 0.8194, 16.375, 23.275, errors=1, client_errors=3)
    ]


def test_no_traffic_gives_empty_series(history: Member) -> None:
    MetricMinute.objects.all().delete()
    body = history.token_client().get(URL).json()
    assert (body["range"], body["series"]) == ("1h", [])


def test_unknown_range_is_a_400_in_the_error_shape(history: Member) -> None:
    response = history.token_client().get(URL, {"range": "5m"})
    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "invalid", "message": "Unknown range '5m'.", "detail": {"range": ["Use one of: 1h, 1d, 1w."]}}
    }


def test_outsiders_and_anonymous_get_nothing(history: Member, make_member, team_b) -> None:
    outsider = make_member(team=team_b, role=Role.ADMIN)
    response = outsider.token_client().get(URL, {"range": "1h"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert outsider.token_client().get("/api/v1/endpoints/nope/metrics").status_code == 404
    from rest_framework.test import APIClient

    assert APIClient().get(URL).status_code in (401, 403)
