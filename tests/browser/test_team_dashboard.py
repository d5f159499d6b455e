"""The team overview is live: an endpoint created elsewhere gets its tile and its socket, traffic moves its numbers
(4xx apart from 5xx), a promote changes its release state, a queued job, a new upload and a fired alert appear in
their cards, and a deleted endpoint's tile goes with its socket, all without a reload.

Both ways events travel are used (the `events` fixture of test_live_pages: Redis' channel layer, or the outbox)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, WebSocket, expect

from deployments.services import endpoint_create, endpoint_delete, release_promote
from registry.formats.base import Recipe
from registry.services.conversions import version_convert_request
from registry.services.versions import registered_model_create
from serving.auth import token_cache
from teams.choices import Role
from teams.permissions import Actor
from tests.browser.test_live_pages import elsewhere, events, log_in, screenshots, site  # noqa: F401  (fixtures)
from tests.deployments.test_endpoint_apis import add_version

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("artifact_dir"),
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators:Warning"),
]

GOOD = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4] * 2}]}
# The model takes 4 features: 3 is the caller's mistake, answered 400.
WRONG_SHAPE = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [0.1, 0.2, 0.3] * 2}]}


@contextmanager
def traffic(url: str, token: str, endpoint: str) -> Iterator[list[int]]:
    """Send requests every 40 ms from a thread until the block ends, one in four of the wrong shape."""
    statuses: list[int] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=5) as client:
            n = 0
            while not stop.is_set():
                body = WRONG_SHAPE if n % 4 == 3 else GOOD
                statuses.append(client.post(f"/v2/models/{endpoint}/infer", json=body).status_code)
                n += 1
                stop.wait(0.04)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(timeout=10)


def number(text: str) -> float:
    return float(text.split()[0])


def test_the_team_overview_follows_endpoints_traffic_jobs_uploads_and_alerts(
    browser: Browser,
    site: str,  # noqa: F811  (test_live_pages' fixture, imported above)
    make_member,
    team_a,
    tmp_path: Path,
    monkeypatch,
    events: str,  # noqa: F811
) -> None:
    from common.events import team_event_publish
    from monitoring.alerts.firing import alert_data
    from monitoring.models import Alert, AlertRule
    from registry.models import Job

    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    token_cache().clear()
    builder = Actor(user=make_member(team=team_a, role=Role.DEVELOPER, username="builder").user)
    watcher = make_member(team=team_a, role=Role.VIEWER, username="watcher")
    model = registered_model_create(actor=builder, team=team_a, name="iris")
    v1, v2 = (add_version(model, builder, tmp_path, seed) for seed in (1, 2))
    Job.objects.all().delete()  # the uploads' own benchmarks: running jobs starts empty

    sockets: list[WebSocket] = []
    page_errors: list[str] = []
    page = log_in(browser, site, "watcher", "/teams/alpha/")
    page.on("websocket", lambda ws: sockets.append(ws))
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    tiles = page.get_by_test_id("endpoint-tiles")
    expect(tiles).to_contain_text("No endpoints yet")
    expect(page.get_by_test_id("running-jobs")).to_contain_text("No job is running")
    expect(page.get_by_test_id("recent-alerts")).to_contain_text("No alert has fired")

    # (a) An endpoint created elsewhere gets its tile, and its tile one socket.
    endpoint = elsewhere(endpoint_create, actor=builder, model=model, name="iris", version=v1)
    tile = page.locator("[data-endpoint-tile=iris]")
    expect(tile).to_be_visible(timeout=10_000)
    expect(tile.get_by_test_id("release-state")).to_contain_text("v1")
    expect(tile.get_by_role("link", name="iris", exact=True)).to_have_attribute("href", "/endpoints/iris/")
    page.wait_for_function("() => window.modeldeckTiles && window.modeldeckTiles.iris")

    # (b) Traffic, a quarter of it refused as the caller's mistake: the numbers and the lines move.
    with traffic(site, watcher.token, "iris") as statuses:
        page.wait_for_function(
            """() => window.modeldeckTiles.iris.data.datasets[0].data.some(p => p.y > 0)""", timeout=10_000
        )
        expect(tile.locator("[data-field=p95]")).to_contain_text("ms", timeout=10_000)
        page.wait_for_function(
            """() => parseFloat(document.querySelector("[data-endpoint-tile=iris] [data-field=client-errors]")
                .textContent) > 10""",
            timeout=10_000,
        )
        assert number(tile.locator("[data-field=rps]").inner_text()) > 0
    assert set(statuses) == {200, 400}
    expect(tile.locator("[data-field=errors]")).to_have_text("0.0 %")
    client_errors = number(tile.locator("[data-field=client-errors]").inner_text())
    assert 10 < client_errors < 45, client_errors  # one in four, give or take the window's edges
    lines = page.evaluate(
        """() => {
            const stream = window.modeldeckTileStreams.get("iris");
            const sets = Object.values(stream.view.charts).flatMap(c => c.data.datasets);
            return Object.fromEntries(sets.map(d => [d.label, d.data.filter(p => p.y > 0).length]));
        }"""
    )
    assert all(lines[label] > 0 for label in ("requests/s", "p95 ms", "4xx %")), lines
    assert lines["5xx %"] == 0
    # p95 merged from the latency buckets of every process and second, not the largest of their p95s.
    assert page.evaluate("window.modeldeckTileStreams.get('iris').boundsMs.length") > 0

    # A promote elsewhere changes the release state; the tile keeps its socket and its last minute.
    elsewhere(release_promote, actor=builder, endpoint=endpoint, version=v2, canary_percent=10)
    expect(tile.get_by_test_id("release-state")).to_contain_text("v1 → v2 canary 10 %", timeout=10_000)
    # Each version in the colour the endpoint charts give it (static/js/metrics.js).
    swatches = tile.locator("[data-version-swatch].colored")
    expect(swatches).to_have_count(2)
    colours = swatches.evaluate_all("all => all.map(e => getComputedStyle(e).backgroundColor)")
    assert len(set(colours)) == 2, colours
    assert page.evaluate("window.modeldeckTiles.iris.data.datasets[0].data.some(p => p.y > 0)") is True

    # (c) A conversion queued elsewhere, and a version uploaded elsewhere.
    elsewhere(version_convert_request, actor=builder, version=v1, recipe=Recipe(target="onnx", quantization="int8"))
    job = page.get_by_test_id("running-jobs").locator("li[data-job-status=queued]", has_text="Conversion to onnx int8")
    expect(job).to_be_visible(timeout=10_000)
    expect(job.get_by_role("link", name="iris v1")).to_have_attribute("href", "/teams/alpha/models/iris/versions/1/")
    elsewhere(add_version, model, builder, tmp_path, 3)
    expect(page.get_by_test_id("recent-uploads").locator("li").first).to_contain_text("iris v3", timeout=10_000)

    # (d) An alert fired elsewhere (the evaluator of some web process), with its numbers.
    def fire() -> None:
        rule = AlertRule.objects.create(
            endpoint=endpoint, name="canary errors", metric="error_rate", threshold=0.05, window_seconds=60
        )
        alert = Alert.objects.create(
            rule=rule,
            rule_name=rule.name,
            endpoint=endpoint,
            release=2,
            version=2,
            role="canary",
            metric="error_rate",
            value=0.3,
            threshold=0.05,
            window_seconds=60,
            requests=80,
        )
        team_event_publish(team="alpha", kind="alert", data=alert_data(alert, endpoint.name))

    elsewhere(fire)
    alerts = page.get_by_test_id("recent-alerts")
    expect(alerts).to_contain_text("canary errors: error_rate 0.3 > 0.05 over 60 s (80 requests)", timeout=10_000)
    expect(alerts.get_by_role("link", name="iris")).to_have_attribute("href", "/endpoints/iris/")

    # A second endpoint comes and goes: its socket opens once and closes with its tile; iris keeps its one socket.
    second = elsewhere(endpoint_create, actor=builder, model=model, name="iris-eu", version=v1)
    expect(page.locator("[data-endpoint-tile=iris-eu]")).to_be_visible(timeout=10_000)
    screenshots(page, tmp_path, f"team-dashboard-{events}")
    page.set_viewport_size({"width": 1440, "height": 900})
    elsewhere(endpoint_delete, actor=builder, endpoint=second, confirm="iris-eu")
    expect(page.locator("[data-endpoint-tile=iris-eu]")).to_have_count(0, timeout=10_000)
    by_path = {path: [ws for ws in sockets if ws.url.endswith(path)] for path in ("/iris/", "/iris-eu/")}
    assert len(by_path["/iris/"]) == 1 and not by_path["/iris/"][0].is_closed()
    assert len(by_path["/iris-eu/"]) == 1
    page.wait_for_function("() => !window.modeldeckTileStreams.has('iris-eu')")
    for _ in range(50):  # the close handshake: a moment after the stream is dropped
        if by_path["/iris-eu/"][0].is_closed():
            break
        page.wait_for_timeout(100)
    assert by_path["/iris-eu/"][0].is_closed()
    assert page.evaluate("window.__noReload") is True
    assert page_errors == []
