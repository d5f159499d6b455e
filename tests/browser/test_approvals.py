"""Four-eyes approvals in a browser: a developer asks on the endpoint page, a second admin approves on the approval
page, and the developer's page moves to the new release without a reload."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from deployments.models import ChangeRequest
from deployments.services import endpoint_create, endpoint_update
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.browser.test_live_pages import events, log_in, screenshots, site  # noqa: F401  (fixtures)
from tests.deployments.test_endpoint_apis import add_version

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("artifact_dir"),
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators:Warning"),
]


def test_a_developer_asks_and_a_second_admin_approves(
    browser: Browser,
    site: str,  # noqa: F811
    make_member,
    team_a,
    tmp_path: Path,
    monkeypatch,
    events: str,  # noqa: F811
) -> None:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    boss = Actor(user=make_member(team=team_a, role=Role.ADMIN, username="boss").user)
    make_member(team=team_a, role=Role.ADMIN, username="ada")
    make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    model = registered_model_create(actor=boss, team=team_a, name="iris")
    v1, _ = (add_version(model, boss, tmp_path, seed) for seed in (1, 2))
    endpoint = endpoint_create(actor=boss, model=model, name="iris", version=v1, protected=True)
    endpoint_update(actor=boss, endpoint=endpoint, requires_approval=True)

    dev = log_in(browser, site, "dev", "/endpoints/iris/")
    dev.on("dialog", lambda dialog: dialog.accept())
    change = dev.get_by_test_id("change")
    expect(change.get_by_test_id("needs-approval")).to_be_visible()
    dev.locator("button[data-action=promote-2]").click()
    expect(change.get_by_test_id("change-request-pending")).to_be_visible(timeout=10_000)
    request = ChangeRequest.objects.get()
    expect(dev.get_by_test_id("current-release")).to_contain_text("Primary v1")

    own = log_in(browser, site, "dev", f"/teams/alpha/approvals/{request.pk}/")
    expect(own.get_by_test_id("approval-why-not").or_(own.locator("[data-action=withdraw]"))).to_be_visible()
    expect(own.locator("[data-action=approve]")).to_have_count(0)

    admin = log_in(browser, site, "ada", "/teams/alpha/")
    expect(admin.get_by_test_id("pending-approvals")).to_contain_text(f"#{request.pk} promote v2 on iris")
    screenshots(admin, tmp_path, "team-overview")
    admin.goto(f"{site}/teams/alpha/approvals/")
    screenshots(admin, tmp_path, "approvals")
    admin.goto(f"{site}/teams/alpha/approvals/{request.pk}/")
    expect(admin.get_by_test_id("approval-versions")).to_contain_text("Serving now: v1")
    expect(admin.get_by_test_id("approval-versions")).to_contain_text("Requested: v2")
    screenshots(admin, tmp_path, "approval")
    admin.set_viewport_size({"width": 1440, "height": 900})
    admin.get_by_test_id("approval-reason").fill("parity and latency fine")
    admin.locator("button[data-action=approve]").click()
    expect(admin.get_by_test_id("approval-state")).to_contain_text("approved", timeout=10_000)

    # The developer's page follows without a reload: the release card, and the change card no longer pending.
    expect(dev.get_by_test_id("current-release")).to_contain_text("Primary v2", timeout=10_000)
    expect(change.get_by_test_id("change-request-pending")).to_have_count(0, timeout=10_000)
    assert dev.evaluate("window.__noReload") is True
