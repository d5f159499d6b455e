"""Pages that follow what the workers and the alert rules do, with no reload: a version page shows a conversion a
worker started and the version it made; an endpoint page shows a rollback someone else made, its charts kept.

Both ways events travel are used: the shared channel layer (Redis, as in production) and the outbox the web
process relays from when there is none (`make run`'s embedded defaults, common/events.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.db import connections
from playwright.sync_api import Browser, Page, expect

from deployments.models import Endpoint
from deployments.services import endpoint_create, release_promote, release_rollback_automatic
from registry.choices import JobKind
from registry.formats.base import Recipe
from registry.models import Job, ModelVersion
from registry.services.conversions import version_convert_request
from registry.services.jobs import job_run
from registry.services.versions import Upload, model_version_create, registered_model_create
from registry.tasks import JOB_HANDLERS
from serving.router import router_reset
from teams.choices import Role
from teams.permissions import Actor
from tests.asgi_server import asgi_server
from tests.deployments.test_endpoint_apis import add_version
from tests.registry.model_files import onnx_file
from tests.teams.factories import PASSWORD

T = TypeVar("T")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("artifact_dir"),
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators:Warning"),
]


@pytest.fixture(params=["redis", "outbox"])
def events(request: pytest.FixtureRequest, settings) -> str:
    """How the team's events reach the page: Redis' channel layer, or the outbox and the web process's relay."""
    if request.param == "outbox":
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return request.param


@pytest.fixture
def site(events: str) -> Iterator[str]:
    router_reset()
    with asgi_server() as url:
        yield url
    router_reset()


def elsewhere(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `call` on a thread of its own, as a worker or another web process would (Playwright's sync API runs an
    event loop in the test's thread, where code that publishes to the channel layer cannot run)."""
    with ThreadPoolExecutor(1) as pool:

        def run() -> T:
            try:
                return call(*args, **kwargs)
            finally:
                connections.close_all()

        return pool.submit(run).result(timeout=60)


def screenshots(page: Page, folder: Path, name: str) -> None:
    """The page at a desktop's width and a phone's, kept with the test's files to be looked at."""
    text = page.locator("body").inner_text()
    assert "{#" not in text and "{%" not in text and "{{" not in text, "template syntax shown on the page"
    for width, height in ((1440, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=True)
        overflowing = page.evaluate(
            "() => Array.from(document.querySelectorAll('main *')).filter(e => e.scrollWidth > e.clientWidth + 1"
            " && getComputedStyle(e).overflowX === 'visible').map(e => e.tagName + '.' + e.className).slice(0, 5)"
        )
        assert overflowing == [], f"{name} at {width} px: {overflowing}"
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), f"{name} scrolls sideways"


def iris_endpoint(
    make_member, team_a, tmp_path: Path, monkeypatch, watcher_role: str
) -> tuple[Actor, Endpoint, ModelVersion]:
    """Endpoint "iris" serving v1 of team alpha's model, built by "builder"; "watcher" looks at it."""
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    builder = Actor(user=make_member(team=team_a, role=Role.DEVELOPER, username="builder").user)
    make_member(team=team_a, role=watcher_role, username="watcher")
    model = registered_model_create(actor=builder, team=team_a, name="iris")
    v1, v2 = (add_version(model, builder, tmp_path, seed) for seed in (1, 2))
    return builder, endpoint_create(actor=builder, model=model, name="iris", version=v1), v2


def log_in(browser: Browser, url: str, username: str, path: str) -> Page:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(f"{url}/accounts/login/?next={path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}{path}")
    page.evaluate("window.__noReload = true")  # gone if the page reloads
    return page


def test_a_conversion_a_worker_runs_appears_on_the_version_page(
    browser: Browser, site: str, make_member, team_a, tmp_path: Path, monkeypatch, events: str
) -> None:
    queued: list[int] = []
    monkeypatch.setattr("registry.tasks.job_run_task.delay", queued.append)
    member = make_member(team=team_a, role=Role.DEVELOPER, username="dana")
    actor = Actor(user=member.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    path = onnx_file(tmp_path / "iris.onnx")
    upload = Upload(path, "iris.onnx", hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    version = model_version_create(actor=actor, model=model, upload=upload)
    Job.objects.filter(version=version).delete()  # the upload's own benchmark: not what this page waits for
    queued.clear()

    page = log_in(browser, site, "dana", "/teams/alpha/models/iris/versions/1/")
    expect(page.locator("#jobs")).to_contain_text("No jobs yet")
    expect(page.locator("#version-files")).not_to_contain_text("Converted to")

    # Elsewhere (a worker, a teammate's click): a conversion is queued, then run.
    elsewhere(version_convert_request, actor=actor, version=version, recipe=Recipe(target="onnx", quantization="int8"))
    row = page.locator("tr[data-job-id]", has_text="Conversion to onnx int8")
    expect(row).to_have_attribute("data-job-status", "queued", timeout=10_000)
    for job_id in queued:
        if Job.objects.get(pk=job_id).kind == JobKind.CONVERT:
            elsewhere(job_run, job_id, "browser-test-worker", JOB_HANDLERS)
    child = ModelVersion.objects.get(parent=version)
    expect(row).to_have_attribute("data-job-status", "succeeded", timeout=10_000)
    expect(row.get_by_role("link", name=f"v{child.number}")).to_be_visible()
    expect(page.locator("#version-files")).to_contain_text(f"Converted to: v{child.number}", timeout=10_000)
    assert page.evaluate("window.__noReload") is True
    screenshots(page, tmp_path, f"version-live-{events}")


def test_an_automatic_rollback_moves_the_endpoint_page_without_a_reload(
    browser: Browser, site: str, make_member, team_a, tmp_path: Path, monkeypatch, events: str
) -> None:
    builder, endpoint, v2 = iris_endpoint(make_member, team_a, tmp_path, monkeypatch, Role.DEVELOPER)
    release_promote(actor=builder, endpoint=endpoint, version=v2, canary_percent=20)

    page = log_in(browser, site, "watcher", "/endpoints/iris/")
    current = page.get_by_test_id("current-release")
    expect(current).to_contain_text("release #2")
    expect(current).to_contain_text("canary v2 takes 20%")
    page.evaluate("window.modeldeckCharts.marked = true")  # the same chart objects after the rollback
    history = page.get_by_test_id("release-history").locator("tbody tr")
    expect(history).to_have_count(2)
    rollback = page.locator("[data-action=rollback]")
    expect(rollback).to_contain_text("remove canary v2")

    rolled = elsewhere(
        release_rollback_automatic,
        endpoint=endpoint,
        rule="canary errors",
        reason="error_rate 0.2 > 0.05",
        evidence={"release": 2},
    )
    assert rolled is not None and rolled.number == 3
    expect(current).to_contain_text("release #3", timeout=10_000)
    expect(current).not_to_contain_text("takes 20%")
    expect(current).to_contain_text("canary errors")
    expect(history).to_have_count(3)
    # The change card follows: the canary that is gone cannot be removed again; v2 can be promoted.
    expect(rollback).to_have_count(0)
    expect(page.locator("[data-action=promote-2]")).to_be_visible()
    assert page.evaluate("window.__noReload") is True
    assert page.evaluate("window.modeldeckCharts.marked") is True
    screenshots(page, tmp_path, f"endpoint-live-{events}")


def test_the_team_overview_shows_what_happens_elsewhere(
    browser: Browser, site: str, make_member, team_a, tmp_path: Path, monkeypatch, events: str
) -> None:
    builder, endpoint, v2 = iris_endpoint(make_member, team_a, tmp_path, monkeypatch, Role.VIEWER)

    page = log_in(browser, site, "watcher", "/teams/alpha/")
    activity = page.get_by_test_id("recent-activity")
    expect(activity).not_to_contain_text("endpoint.promote")
    elsewhere(release_promote, actor=builder, endpoint=endpoint, version=v2, reason="try v2")
    expect(activity).to_contain_text("endpoint.promote", timeout=10_000)
    assert page.evaluate("window.__noReload") is True


def test_endpoint_settings_change_in_place(
    browser: Browser, site: str, make_member, team_a, tmp_path: Path, monkeypatch, events: str
) -> None:
    _, endpoint, _ = iris_endpoint(make_member, team_a, tmp_path, monkeypatch, Role.DEVELOPER)
    page = log_in(browser, site, "watcher", "/endpoints/iris/")
    page.evaluate("window.modeldeckCharts.marked = true")
    settings = page.get_by_test_id("endpoint-settings")
    expect(settings.locator("input[name=protected]")).to_be_disabled()  # a developer: admins protect
    settings.locator("input[name=public]").check()
    settings.locator("input[name=max_batch_size]").fill("16")
    settings.get_by_role("button", name="Save settings").click()
    expect(page.get_by_test_id("settings-saved")).to_have_text("Saved: public on, batch rows 16.")
    expect(page.get_by_test_id("call-it")).to_contain_text("Public: no token needed.")
    expect(page.get_by_test_id("call-it")).to_contain_text("up to 16 rows per call")
    expect(page.locator("#endpoint-badges")).to_contain_text("public")
    endpoint.refresh_from_db()
    assert (endpoint.public, endpoint.max_batch_size, endpoint.protected) == (True, 16, False)

    settings = page.get_by_test_id("endpoint-settings")
    settings.locator("input[name=max_queue_delay_ms]").fill("5000")  # over the 1000 ms the field allows
    settings.get_by_role("button", name="Save settings").click()
    assert settings.locator("input[name=max_queue_delay_ms]").evaluate("e => e.validity.rangeOverflow") is True
    endpoint.refresh_from_db()
    assert endpoint.max_queue_delay_ms == 2.0  # the browser sent nothing (the server refuses it too: test_pages)
    assert page.evaluate("window.modeldeckCharts.marked") is True


def test_alert_rules_are_managed_and_fired_alerts_appear_on_the_endpoint_page(
    browser: Browser, site: str, make_member, team_a, tmp_path: Path, monkeypatch, events: str
) -> None:
    from common.events import team_event_publish
    from monitoring.alerts.firing import alert_data
    from monitoring.models import Alert, AlertRule
    from teams.models import AuditEvent

    _, endpoint, _ = iris_endpoint(make_member, team_a, tmp_path, monkeypatch, Role.DEVELOPER)
    page = log_in(browser, site, "watcher", "/endpoints/iris/")
    card = page.get_by_test_id("alerts")
    expect(card).to_contain_text("No rules yet.")
    form = card.get_by_test_id("alert-rule-form")
    form.get_by_label("Name").fill("too many errors")
    form.get_by_label("Metric").select_option("error_rate")
    form.get_by_label("Above").fill("0.5")
    form.get_by_label("Then").select_option("rollback")
    form.get_by_role("button", name="Add rule").click()
    rule_row = card.locator("tr[data-rule='too many errors']")
    expect(rule_row).to_contain_text("Roll back")
    expect(rule_row).to_contain_text("on")
    rule = AlertRule.objects.get(endpoint=endpoint)
    assert (rule.metric, rule.threshold, rule.action, rule.enabled) == ("error_rate", 0.5, "rollback", True)

    # A rate is a fraction: the server says so, in place, and adds nothing.
    form = card.get_by_test_id("alert-rule-form")
    form.get_by_label("Name").fill("percent by mistake")
    form.get_by_label("Above").fill("5")
    form.get_by_role("button", name="Add rule").click()
    expect(card.get_by_role("alert")).to_contain_text("A rate is a fraction")
    assert AlertRule.objects.filter(endpoint=endpoint).count() == 1

    card.locator("tr[data-rule='too many errors'] [data-action=toggle]").click()
    expect(card.locator("tr[data-rule='too many errors']")).to_contain_text("off")
    assert AlertRule.objects.get(pk=rule.pk).enabled is False

    # Fired elsewhere (the evaluator in a web process): the card shows it with its numbers, without a reload.
    def fire() -> None:
        alert = Alert.objects.create(
            rule=rule,
            rule_name=rule.name,
            endpoint=endpoint,
            release=1,
            version=1,
            role="primary",
            metric="error_rate",
            value=0.62,
            threshold=0.5,
            window_seconds=60,
            requests=120,
        )
        team_event_publish(team="alpha", kind="alert", data=alert_data(alert, endpoint.name))

    elsewhere(fire)
    fired = card.get_by_test_id("fired-alerts")
    expect(fired).to_contain_text("error_rate 0.62 > 0.5 over 60 s", timeout=10_000)

    page.once("dialog", lambda dialog: dialog.accept())
    card.locator("tr[data-rule='too many errors'] [data-action=delete]").click()
    expect(card).to_contain_text("Rule “too many errors” deleted")
    expect(card.get_by_test_id("fired-alerts")).to_contain_text("too many errors")  # the alert stays, as history
    assert not AlertRule.objects.filter(endpoint=endpoint).exists()
    actions = set(AuditEvent.objects.filter(action__startswith="alert_rule.").values_list("action", flat=True))
    assert actions == {"alert_rule.create", "alert_rule.disable", "alert_rule.delete"}
    assert page.evaluate("window.__noReload") is True
    screenshots(page, tmp_path, f"endpoint-alerts-{events}")


def test_promote_and_roll_back_from_the_page_keep_the_charts(
    browser: Browser, site: str, make_member, team_a, tmp_path: Path, monkeypatch, events: str
) -> None:
    iris_endpoint(make_member, team_a, tmp_path, monkeypatch, Role.DEVELOPER)
    page = log_in(browser, site, "watcher", "/endpoints/iris/")
    page.evaluate("window.modeldeckCharts.marked = true")
    questions: list[str] = []

    def accept(dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    current = page.get_by_test_id("current-release")
    page.locator("button[data-action=promote-2]").click()
    expect(current).to_contain_text("release #2", timeout=10_000)
    expect(current).to_contain_text("Primary v2")
    page.locator("button[data-action=rollback]").click()
    expect(current).to_contain_text("release #3", timeout=10_000)
    expect(current).to_contain_text("Primary v1")
    expect(page.get_by_test_id("release-history").locator("tbody tr")).to_have_count(3)
    assert questions[0].startswith("Promote v2 on iris? It replaces v1 for all traffic")
    assert questions[1].startswith("Roll back iris from release #2 (v2) to v1?")
    assert page.evaluate("window.__noReload") is True
    assert page.evaluate("window.modeldeckCharts.marked") is True


def _tab_to(page: Page, selector: str, most: int = 200) -> None:
    """Press Tab from the top of the page until `selector` has the focus, as a keyboard user would."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            # And it shows where the focus is.
            # The house outline (static/css/app.css), not the browser's default one that some themes hide.
            outline = page.evaluate(
                "() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]; }"
            )
            assert outline == ["solid", "2px"], f"{selector} has the focus but not the focus outline: {outline}"
            return
    raise AssertionError(f"{selector} cannot be reached with Tab")


def test_promote_and_roll_back_by_keyboard(
    browser: Browser, site: str, make_member, team_a, tmp_path: Path, monkeypatch
) -> None:
    iris_endpoint(make_member, team_a, tmp_path, monkeypatch, Role.DEVELOPER)
    page = log_in(browser, site, "watcher", "/endpoints/iris/")
    page.on("dialog", lambda dialog: dialog.accept())
    current = page.get_by_test_id("current-release")
    _tab_to(page, "button[data-action=promote-2]")
    page.keyboard.press("Enter")
    expect(current).to_contain_text("Primary v2", timeout=10_000)
    _tab_to(page, "button[data-action=rollback]")
    page.keyboard.press("Enter")
    expect(current).to_contain_text("Primary v1", timeout=10_000)
    # The range switch of the charts, too.
    _tab_to(page, "[data-range='1h']")
    page.keyboard.press("Enter")
    expect(page.locator("[data-range='1h']")).to_have_attribute("aria-pressed", "true")
