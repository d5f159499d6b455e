"""Archiving in the browser: a refusal shown on the version page, then archive, the greyed row, and unarchive."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from deployments.services import endpoint_create
from registry.models import ModelVersion
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.models import AuditEvent
from teams.permissions import Actor
from tests.browser.test_live_pages import screenshots
from tests.deployments.test_endpoint_apis import add_version
from tests.teams.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("artifact_dir")]


def test_archive_a_version_from_its_page(
    browser: Browser, live_server, make_member, team_a, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    actor = Actor(user=make_member(team=team_a, role=Role.DEVELOPER, username="dev").user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    v1, v2 = (add_version(model, actor, tmp_path, seed) for seed in (1, 2))
    endpoint_create(actor=actor, model=model, name="iris-prod", version=v1)

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/accounts/login/?next=/teams/alpha/models/iris/versions/1/")
    page.fill("#id_username", "dev")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")

    # v1 serves iris-prod: the refusal is on the version page, which stays whole.
    page.locator("button[data-action=archive]").click()
    expect(page.get_by_test_id("archive-error")).to_contain_text("is live on iris-prod (v1 primary)")
    expect(page.get_by_test_id("signature")).to_be_visible()
    screenshots(page, tmp_path, "archive-refused")
    assert ModelVersion.objects.get(pk=v1.pk).archived_at is None

    page.goto(f"{live_server.url}/teams/alpha/models/iris/versions/2/")
    expect(page.get_by_test_id("deploy")).to_be_visible()
    page.locator("button[data-action=archive]").click()
    expect(page.locator(".messages")).to_contain_text("v2 is archived")
    expect(page.get_by_test_id("version-archived")).to_be_visible()
    expect(page.get_by_test_id("deploy")).to_have_count(0)
    screenshots(page, tmp_path, "version-archived")

    page.goto(f"{live_server.url}/teams/alpha/models/iris/")
    archived_row = page.locator("[data-testid=version-list] tr[data-archived=true]")
    expect(archived_row).to_have_count(1)
    expect(archived_row).to_contain_text("v2")
    expect(archived_row).to_contain_text("archived")
    screenshots(page, tmp_path, "model-with-archived-version")

    page.goto(f"{live_server.url}/teams/alpha/models/iris/versions/2/")
    page.locator("button[data-action=unarchive]").click()
    expect(page.locator(".messages")).to_contain_text("v2 is active again")
    expect(page.get_by_test_id("deploy")).to_be_visible()
    assert ModelVersion.objects.get(pk=v2.pk).archived_at is None
    actions = list(AuditEvent.objects.filter(action__startswith="version.").values_list("action", flat=True))
    assert actions.count("version.archive") == 1 and actions.count("version.unarchive") == 1
