"""One-click rollback in the browser, behind a confirm step that names the versions involved."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Dialog, expect

from deployments.models import Release
from deployments.services import endpoint_create, release_promote
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version
from tests.teams.factories import PASSWORD, create_membership, create_team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("artifact_dir")]


def test_rollback_asks_first_and_names_the_versions(browser: Browser, live_server, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    membership = create_membership(team=create_team(slug="alpha"), role=Role.DEVELOPER, user__username="gus")
    actor = Actor(user=membership.user)
    model = registered_model_create(actor=actor, team=membership.team, name="iris")
    v1, v2 = (add_version(model, actor, tmp_path, seed) for seed in (1, 2))
    endpoint = endpoint_create(actor=actor, model=model, name="iris-prod-like", version=v1)
    release_promote(actor=actor, endpoint=endpoint, version=v2, reason="new model")

    page = browser.new_page()
    page.goto(f"{live_server.url}/accounts/login/?next=/endpoints/iris-prod-like/")
    page.fill("#id_username", "gus")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_test_id("current-release")).to_contain_text("release #2")

    messages: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.locator("button[data-action=rollback]").click()
    expect(page.get_by_test_id("current-release")).to_contain_text("release #2")  # dismissed: nothing changed
    assert messages == [
        "Roll back iris-prod-like from release #2 (v2) to v1? It takes all traffic, with no canary and no shadow."
    ]
    assert Release.objects.filter(endpoint=endpoint).count() == 2

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("button[data-action=rollback]").click()
    expect(page.get_by_test_id("current-release")).to_contain_text("release #3")
    expect(page.get_by_test_id("current-release")).to_contain_text("v1")
    expect(page.get_by_test_id("release-history")).to_contain_text("Rolled back")
