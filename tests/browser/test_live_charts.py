"""Live charts in the browser: inference traffic on a real uvicorn server moves the endpoint page's charts and the
team page's tiles within seconds, and the range switch draws the history the API returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from playwright.sync_api import Browser, Page, expect

from deployments.models import Endpoint
from deployments.services import endpoint_create, release_promote
from monitoring.models import MetricMinute
from monitoring.publish import endpoint_metrics_publish
from monitoring.recorder import LATENCY_BOUNDS
from registry.services.versions import registered_model_create
from serving.auth import token_cache
from serving.router import router_get, router_reset
from teams.choices import Role
from teams.permissions import Actor
from tests.asgi_server import asgi_server
from tests.browser.test_live_pages import screenshots
from tests.conftest import Member
from tests.deployments.test_endpoint_apis import add_version
from tests.teams.factories import PASSWORD

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("artifact_dir"),
    # WhiteNoise hands static files to Django's ASGI handler as sync iterators (the suite serves them from the finders).
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators:Warning"),
]

INFER_BODY = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4] * 2}]}
# Data points of the requests chart above zero, release markers left out (they sit at y = 0 anyway).
REQUESTS_MOVED = """() => window.modeldeckCharts && window.modeldeckCharts.requests.data.datasets.some(
    d => !d.releaseMarkers && d.data.some(p => (p.y ?? p) > 0))"""


@dataclass
class Watched:
    """Team alpha's endpoint "iris": primary v1, canary v2 (50 %), shadow v3; a viewer who watches it."""

    viewer: Member
    endpoint: Endpoint


@pytest.fixture
def watched(make_member, team_a, tmp_path, monkeypatch) -> Iterator[Watched]:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    router_reset()
    token_cache().clear()
    builder = Actor(user=make_member(team=team_a, role=Role.DEVELOPER, username="builder").user)
    model = registered_model_create(actor=builder, team=team_a, name="iris")
    v1, v2, v3 = (add_version(model, builder, tmp_path, seed) for seed in (1, 2, 3))
    endpoint = endpoint_create(actor=builder, model=model, name="iris", version=v1)
    release_promote(actor=builder, endpoint=endpoint, version=v2, canary_percent=50, shadow_version=v3)
    yield Watched(make_member(team=team_a, role=Role.VIEWER, username="watcher"), endpoint)
    router_reset()


@pytest.fixture
def live_url(watched: Watched) -> Iterator[str]:
    with asgi_server() as url:
        yield url


@contextmanager
def traffic(url: str, token: str) -> Iterator[list[int]]:
    """Send an inference request every 50 ms from a thread until the block ends; yields the statuses seen."""
    statuses: list[int] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=5) as client:
            while not stop.is_set():
                statuses.append(client.post("/v2/models/iris/infer", json=INFER_BODY).status_code)
                stop.wait(0.05)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.fixture
def page(browser: Browser, live_url: str) -> Iterator[Page]:
    """A page closed while the server still runs, so its websockets end the way a browser tab's do."""
    page = browser.new_page()
    yield page
    page.close()


def _log_in(page: Page, url: str, next_path: str) -> None:
    page.goto(f"{url}/accounts/login/?next={next_path}")
    page.fill("#id_username", "watcher")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")


def test_traffic_moves_the_endpoint_charts_and_the_team_tile(page: Page, watched: Watched, live_url: str) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    _log_in(page, live_url, "/endpoints/iris/")
    expect(page.get_by_test_id("live-charts")).to_be_visible()
    page.wait_for_function("() => window.modeldeckCharts && window.modeldeckCharts.requests")
    assert page.evaluate(REQUESTS_MOVED) is False  # nothing served yet
    # The page's releases are markers on the time axis.
    markers = "() => window.modeldeckCharts.requests.data.datasets.find(d => d.releaseMarkers).data.map(p => p.text)"
    assert page.evaluate(markers) == ["release #2 canary: v1 + canary v2 (50%) + shadow v3", "release #1 create: v1"]

    with traffic(live_url, watched.viewer.token) as statuses:
        page.wait_for_function(REQUESTS_MOVED, timeout=10000)
        # Primary, canary and shadow side by side, each its own dataset.
        page.wait_for_function(
            """() => ["v1 primary", "v2 canary", "v3 shadow"].every(label => window.modeldeckCharts.requests.data
                .datasets.some(d => d.label === label && d.data.some(p => p.y > 0)))""",
            timeout=10000,
        )
    assert statuses and set(statuses) == {200}
    latency_labels = page.evaluate("() => window.modeldeckCharts.latency.data.datasets.map(d => d.label)")
    assert {"v1 primary p50", "v1 primary p95", "v2 canary p95", "v3 shadow p95"} <= set(latency_labels)
    # Short legends: one entry per version, whatever lines it has (the caption tells p95 from p50).
    legend = "() => window.modeldeckCharts.latency.legend.legendItems.map(item => item.text)"
    assert page.evaluate(legend) == ["v1 primary", "v2 canary", "v3 shadow", "releases"]
    shadow_rates = page.evaluate("() => window.modeldeckCharts.disagreement.data.datasets.map(d => d.label)")
    assert shadow_rates == ["v3 shadow", "releases"]
    # One colour per version, the same on every chart, and no two versions alike.
    colours = page.evaluate(
        """() => Object.values(window.modeldeckCharts).map(c => Object.fromEntries(c.data.datasets
            .filter(d => !d.releaseMarkers).map(d => [d.seriesLabel, d.borderColor])))"""
    )
    assert colours[0] == {label: colours[1][label] for label in colours[0]}
    assert len(set(colours[0].values())) == 3
    # The axis is sized to the traffic (a minute at least), not fifteen minutes with the data at the right edge.
    assert 60 <= page.evaluate("() => window.modeldeckCharts.requests.data.datasets[0].data.length") < 120

    # History: the API's minute buckets, through the range switch.
    _minute_written(watched.endpoint, 5, [0, 0, 0, 600] + [0] * (len(LATENCY_BOUNDS) - 3), errors=6)
    page.get_by_role("button", name="Last hour").click()
    page.wait_for_function(
        """() => window.modeldeckCharts.requests.data.datasets.some(d => d.label === "v1 primary"
            && d.data.length <= 60 && d.data.some(p => p.y === 10))""",
        timeout=10000,
    )
    expect(page.get_by_role("button", name="Last hour")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="Live").click()
    page.wait_for_function(
        "() => window.modeldeckCharts.requests.data.datasets.some(d => d.label === 'v2 canary' && d.data.length >= 60)"
    )

    # A drift window from a web process reaches the drift table, most drifted feature first.
    drift = {"endpoint": "iris", "second": int(time.time()), "process": "test:9", "versions": []}
    drift["drift"] = [{"version": 1, "rows": 240, "psi": {"x[0]": 0.01, "x[2]": 0.41}}]
    # From a thread of its own: Playwright's sync API keeps an event loop running in this one.
    publisher = threading.Thread(
        target=async_to_sync(endpoint_metrics_publish), kwargs={"endpoint": "iris", "metrics": drift}
    )
    publisher.start()
    publisher.join(timeout=10)
    row = page.locator("[data-drift-rows] tr[data-version='1']")
    expect(row).to_contain_text("0.410 (significant)")
    expect(row).to_contain_text("x[2] 0.410, x[0] 0.010")

    # The team page: one tile per endpoint, fed by the same stream.
    page.goto(f"{live_url}/teams/alpha/")
    tile = page.locator("[data-endpoint-tile=iris]")
    expect(tile).to_be_visible()
    page.wait_for_function("() => window.modeldeckTiles && window.modeldeckTiles.iris")
    with traffic(live_url, watched.viewer.token):
        page.wait_for_function(
            "() => window.modeldeckTiles.iris.data.datasets[0].data.some(p => p.y > 0)", timeout=10000
        )
        expect(tile.locator("[data-field=p95]")).to_contain_text("ms")
    expect(tile.locator("[data-field=errors]")).to_have_text("0.0 %")
    assert errors == []


def _minute_written(endpoint: Endpoint, minutes_ago: int, latency_buckets: list[int], errors: int = 0) -> datetime:
    """A minute of v1's traffic as another web process stored it, `minutes_ago` whole minutes back."""
    minute = datetime.now(tz=UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes_ago)
    count = sum(latency_buckets)
    MetricMinute.objects.create(
        endpoint=endpoint,
        version=1,
        role="primary",
        minute=minute,
        process="other-host:1",
        count=count,
        errors=errors,
        latency_sum=0.001 * count,
        rows=count,
        latency_buckets=latency_buckets,
        codes={"200": count - errors, "500": errors},
    )
    return minute


def _publish(metrics: dict[str, Any]) -> None:
    # From a thread of its own: Playwright's sync API keeps an event loop running in this one.
    # The wrapper is made there too: made here, it would find this thread's loop and refuse.
    publisher = threading.Thread(
        target=lambda: async_to_sync(endpoint_metrics_publish)(endpoint="iris", metrics=metrics)
    )
    publisher.start()
    publisher.join(timeout=10)


def test_charts_open_with_history_and_draw_steady_traffic_steadily(
    page: Page, watched: Watched, live_url: str, tmp_path: Path
) -> None:
    """What the issue saw: history lost on every load, a steady load drawn as a 0-80 sawtooth, p95 at a bucket edge
    (10 ms for a 0.01 ms model), 4xx invisible."""
    bounds = [round(b * 1000, 4) for b in LATENCY_BOUNDS]
    tiny = bounds.index(0.025)  # 10-25 µs: a model answering in hundredths of a millisecond

    def buckets(n: int) -> list[int]:
        return [n if i == tiny else 0 for i in range(len(bounds) + 1)]

    # Seven minutes ago, before the page opens: 20 req/s for a minute, written by another web process.
    minute = _minute_written(watched.endpoint, 7, buckets(1200))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    _log_in(page, live_url, "/endpoints/iris/")
    page.wait_for_function("() => window.modeldeckCharts && window.modeldeckCharts.requests")
    # Loaded on open, in the live view: the minute's 1,200 requests as 20 per second, the axis reaching back to it.
    page.wait_for_function(
        """() => window.modeldeckCharts.requests.data.datasets.some(d => d.label === "v1 primary"
            && d.data.some(p => Math.abs(p.y - 20) < 1e-9))""",
        timeout=10000,
    )
    axis_from = page.evaluate("() => window.modeldeckCharts.requests.options.scales.x.min") / 1000
    assert axis_from <= minute.timestamp() + 5

    # Once the page's socket listens (a drift window reaches its table), the live seconds follow.
    row = page.locator("[data-drift-rows] tr[data-version='1']")
    while not row.count():
        drift = {"endpoint": "iris", "second": int(time.time()), "process": "test:9", "versions": []}
        _publish(drift | {"drift": [{"version": 1, "rows": 240, "psi": {"x[0]": 0.01}}]})
        page.wait_for_timeout(200)
    # A steady 40 req/s that one web process reported unevenly (80, 0, 80, 0 ...): drawn near 40, not as a saw.
    # 10 % of the requests were refused with 400.
    second = int(time.time()) - 1
    for s in range(second - 11, second + 1):
        n = 80 if s % 2 else 0
        _publish(
            {
                "endpoint": "iris",
                "second": s,
                "process": "web-a:1",
                "bounds_ms": bounds,
                "versions": [
                    {
                        "version": 1,
                        "role": "primary",
                        "count": n,
                        "errors": 0,
                        "client_errors": n // 10,
                        "disagreements": 0,
                        "latency_buckets": buckets(n),
                    }
                ],
            }
        )
    # Drawn once a second: wait for the draw that has the last of them.
    page.wait_for_function(
        f"() => window.modeldeckCharts.requests.data.datasets[0].data.some(p => p.x === {second * 1000} && p.y > 0)"
    )
    points = page.evaluate(
        f"""() => {{
            const at = (chart, label) => window.modeldeckCharts[chart].data.datasets.find(d => d.label === label)
                .data.filter(p => p.x >= {(second - 5) * 1000} && p.x <= {second * 1000}).map(p => p.y);
            return {{rate: at("requests", "v1 primary"), p95: at("latency", "v1 primary p95"),
                     refused: at("errors", "v1 primary 4xx"), failed: at("errors", "v1 primary 5xx")}};
        }}"""
    )
    assert len(points["rate"]) == 6
    assert all(32 <= rate <= 48 for rate in points["rate"]), points["rate"]  # 5 s windows of 80, 0, 80, 0, 80
    # p95 within the 10-25 µs bucket, not its edge: 10 + 15 * 0.95 µs.
    assert all(p95 == pytest.approx(0.02425) for p95 in points["p95"]), points["p95"]
    assert all(refused == pytest.approx(10.0) for refused in points["refused"]), points["refused"]
    assert all(failed == 0 for failed in points["failed"]), points["failed"]
    screenshots(page, tmp_path, "endpoint-charts")
    assert errors == []


def test_a_failing_canary_shows_up_live_and_its_automatic_rollback_is_marked(
    page: Page, watched: Watched, live_url: str
) -> None:
    """The "done" story: a team lead watches the page, the canary's errors appear within seconds, a rollback rule
    rolls it back by itself, the page marks the rollback, and the audit log holds it with the numbers."""
    from monitoring.models import AlertRule
    from teams.models import AuditEvent

    AlertRule.objects.create(
        endpoint=watched.endpoint,
        name="canary errors",
        metric="error_rate",
        threshold=0.05,
        window_seconds=30,
        min_requests=5,
        action="rollback",
        bake_seconds=600,
    )
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    _log_in(page, live_url, "/endpoints/iris/")
    page.wait_for_function("() => window.modeldeckCharts && window.modeldeckCharts.errors")

    # The canary (v2) breaks: every request it answers is a 500.
    canary = router_get().state.routes["iris"].canary
    assert canary is not None

    def broken(inputs: object) -> object:
        raise RuntimeError("the canary's runtime fails")

    canary.runtime.run = broken  # type: ignore[method-assign,assignment]
    with traffic(live_url, watched.viewer.token) as statuses:
        page.wait_for_function(
            """() => window.modeldeckCharts.errors.data.datasets.some(
                d => d.label === "v2 canary 5xx" && d.data.some(p => (p.y ?? p) > 0))""",
            timeout=10000,
        )
        page.wait_for_function(
            """() => window.modeldeckCharts.requests.data.datasets.some(
                d => d.releaseMarkers && d.data.some(p => String(p.text || "").includes("rollback")))""",
            timeout=15000,
        )
    assert 500 in statuses
    event = AuditEvent.objects.get(action="endpoint.auto_rollback")
    assert event.data["evidence"]["metric"] == "error_rate" and event.data["evidence"]["version"] == 2
    assert event.data["evidence"]["value"] > 0.05
    assert errors == []
