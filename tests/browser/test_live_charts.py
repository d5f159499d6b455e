"""Live charts in the browser: inference traffic on a real uvicorn server moves the endpoint page's charts and the
team page's tiles within seconds, and the range switch draws the history the API returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
    assert {"v1 primary p50", "v1 primary p95", "v1 primary p99", "v2 canary p99"} <= set(latency_labels)
    shadow_rates = page.evaluate("() => window.modeldeckCharts.disagreement.data.datasets.map(d => d.label)")
    assert shadow_rates == ["v3 shadow", "releases"]
    # The live window is five minutes of seconds, the quiet ones drawn as zero.
    assert page.evaluate("() => window.modeldeckCharts.requests.data.datasets[0].data.length") == 300

    # History: the API's minute buckets, through the range switch.
    minute = datetime.now(tz=UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    MetricMinute.objects.create(
        endpoint=watched.endpoint,
        version=1,
        role="primary",
        minute=minute,
        process="other-host:1",
        count=600,
        errors=6,
        latency_sum=0.6,
        rows=600,
        latency_buckets=[0, 0, 0, 600] + [0] * (len(LATENCY_BOUNDS) - 3),
        codes={"200": 594, "500": 6},
    )
    page.get_by_role("button", name="Last hour").click()
    page.wait_for_function(
        """() => window.modeldeckCharts.requests.data.datasets.some(d => d.label === "v1 primary"
            && d.data.length === 60 && d.data.some(p => p.y === 10))""",
        timeout=10000,
    )
    expect(page.get_by_role("button", name="Last hour")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="Live").click()
    page.wait_for_function("() => window.modeldeckCharts.requests.data.datasets[0].data.length === 300")

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
                d => d.label === "v2 canary" && d.data.some(p => (p.y ?? p) > 0))""",
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
