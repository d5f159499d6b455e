"""The endpoint page's rollout card: start a rollout in the browser, watch its steps move as the evaluator judges
them (from another thread, as the cluster's evaluator in another process would), and abort one, all in place."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from deployments.models import Rollout
from deployments.rollouts import Traffic, rollout_judge
from teams.choices import Role
from tests.browser.test_live_pages import elsewhere, events, iris_endpoint, log_in, screenshots, site  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("artifact_dir"),
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators:Warning"),
]

HEALTHY = Traffic(requests=500, errors=0, disagreements=0, p95_ms=2.0)


def judged(rollout_id: int, seconds_in: float) -> Rollout | None:
    """What the evaluator does each second: judge the running step on its traffic, `seconds_in` into the step."""
    rollout = Rollout.objects.get(pk=rollout_id)
    return rollout_judge(
        rollout_id=rollout.pk,
        step=rollout.step,
        canary=HEALTHY,
        primary=HEALTHY,
        shadow=None,
        drift_psi=None,
        now=rollout.step_started_at + timedelta(seconds=seconds_in),
    )


def test_a_rollout_is_started_followed_and_aborted_on_the_endpoint_page(
    browser: Browser,
    site: str,  # noqa: F811
    make_member,
    team_a,
    tmp_path: Path,
    monkeypatch,
) -> None:
    iris_endpoint(make_member, team_a, tmp_path, monkeypatch, Role.DEVELOPER)

    async def judges_nothing(self: object, now: float) -> None:
        return None

    # This test is the evaluator: the server's own would judge the rollout on its (absent) traffic every second.
    monkeypatch.setattr("monitoring.alerts.cluster.ClusterEvaluator.tick", judges_nothing)
    page = log_in(browser, site, "watcher", "/endpoints/iris/")
    page.evaluate("window.__noReload = true")
    card = page.get_by_test_id("rollout")
    form = page.get_by_test_id("rollout-form")
    form.locator("select[name=version]").select_option("2")
    form.locator("input[name=steps]").fill("10,50")
    form.locator("input[name=bake]").fill("1m")
    form.locator("input[name=reason]").fill("try v2 slowly")
    page.locator("button[data-action=rollout-start]").click()
    state = page.get_by_test_id("rollout-state")
    expect(state).to_contain_text("v2 running, step 1/2 at 10%", timeout=10_000)
    expect(page.get_by_test_id("current-release")).to_contain_text("v2", timeout=10_000)
    [rollout] = Rollout.objects.all()
    assert rollout.reason == "try v2 slowly" and rollout.steps == [
        {"percent": 10, "bake_seconds": 60},
        {"percent": 50, "bake_seconds": 60},
    ]

    # The evaluator judges: before the bake is over nothing moves but the live numbers; after it, the next step.
    assert elsewhere(judged, rollout.pk, 30) is None
    expect(card.locator("[data-gate=min_requests]")).to_contain_text("500", timeout=10_000)
    assert elsewhere(judged, rollout.pk, 61) is not None
    expect(state).to_contain_text("step 2/2 at 50%", timeout=10_000)
    screenshots(page, tmp_path, "rollout-card")

    # Abort, confirmed: the canary stops at once, and the card offers a new rollout with the last one's outcome.
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("button[data-action=rollout-abort]").click()
    expect(page.get_by_test_id("rollout-last")).to_contain_text("aborted", timeout=10_000)
    assert Rollout.objects.get(pk=rollout.pk).state == "aborted"
    assert page.evaluate("window.__noReload") is True
