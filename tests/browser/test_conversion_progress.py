"""A person converts a version with one click and watches the job reach 100% without reloading the page."""

from __future__ import annotations

import hashlib

import pytest
from playwright.sync_api import Browser, expect

from registry.services.jobs import job_run
from registry.services.versions import Upload, model_version_create, registered_model_create
from registry.tasks import JOB_HANDLERS
from teams.choices import Role
from teams.permissions import Actor
from tests.registry.model_files import onnx_file
from tests.teams.factories import PASSWORD, create_membership, create_team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_one_click_conversion_progress_reaches_100_live(
    browser: Browser, live_server, tmp_path, artifact_dir, monkeypatch
):
    queued: list[int] = []
    monkeypatch.setattr("registry.tasks.job_run_task.delay", queued.append)
    membership = create_membership(team=create_team(slug="alpha"), role=Role.DEVELOPER, user__username="fay")
    actor = Actor(user=membership.user)
    model = registered_model_create(actor=actor, team=membership.team, name="iris")
    path = onnx_file(tmp_path / "iris.onnx")
    model_version_create(
        actor=actor,
        model=model,
        upload=Upload(path, "iris.onnx", hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size),
    )

    page = browser.new_page()
    page.goto(f"{live_server.url}/accounts/login/?next=/teams/alpha/models/iris/versions/1/")
    page.fill("#id_username", "fay")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_test_id("version-status")).to_have_text("ready")
    page.evaluate("window.__noReload = true")

    page.locator("button[data-recipe='onnx:int8']").click()
    row = page.locator("tr[data-job-id]", has_text="Conversion to onnx int8")
    expect(row).to_have_attribute("data-job-status", "queued")

    while queued:  # what the worker does meanwhile: the upload's benchmark, then the conversion
        job_run(queued.pop(0), "browser-test-worker", JOB_HANDLERS)

    expect(row).to_have_attribute("data-job-status", "succeeded", timeout=10_000)
    expect(row.get_by_test_id("job-progress")).to_have_text("100%")
    expect(row.get_by_role("link", name="v2")).to_be_visible()
    assert page.evaluate("window.__noReload") is True

    row.get_by_role("link", name="v2").click()
    expect(page.get_by_test_id("parity")).to_contain_text("passed")
    page.screenshot(path=str(tmp_path / "parity.png"), full_page=True)
