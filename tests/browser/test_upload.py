"""A person uploads model files through the page: progress, errors, and a version that turns ready live."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from registry.models import ModelVersion
from registry.services.versions import model_version_inspect
from teams.choices import Role
from tests.registry.model_files import keras_file, onnx_file
from tests.teams.factories import PASSWORD, create_membership, create_team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_upload_through_the_page(browser: Browser, live_server, tmp_path, artifact_dir, monkeypatch) -> None:
    queued: list[int] = []
    monkeypatch.setattr("registry.tasks.model_version_inspect_task.delay", queued.append)
    create_membership(team=create_team(slug="alpha"), role=Role.DEVELOPER, user__username="erin")
    page = browser.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "erin")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.get_by_role("link", name="Models").click()
    page.fill("input[name=name]", "iris")
    page.get_by_role("button", name="Create model").click()
    expect(page).to_have_url(f"{live_server.url}/teams/alpha/models/iris/")
    # The URL changes before the page's scripts run; a file chosen before upload.js listens would go nowhere.
    page.wait_for_load_state("load")

    # A file that is not a model: the error is shown, nothing is stored.
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all" * 10)
    page.set_input_files("#upload-file", str(junk))
    expect(page.locator("#upload-error")).to_contain_text("not a model file")
    # The bytes did go up: the XHR progress events filled the bar before the server refused the file.
    expect(page.locator("#upload-percent")).to_have_text("100%")
    assert page.locator("#upload-progress").evaluate("bar => bar.value") == 100
    assert not ModelVersion.objects.exists()

    # ONNX is inspected at once: the page lands on a ready version with its signature.
    page.set_input_files("#upload-file", str(onnx_file(tmp_path / "iris.onnx")))
    expect(page).to_have_url(f"{live_server.url}/teams/alpha/models/iris/versions/1/")
    expect(page.get_by_test_id("version-status")).to_have_text("ready")
    expect(page.get_by_test_id("signature")).to_contain_text("probs")

    # Keras needs the worker: the page shows processing, then ready without a reload.
    page.goto(f"{live_server.url}/teams/alpha/models/iris/")
    page.set_input_files("#upload-file", str(keras_file(tmp_path / "iris.keras")))
    expect(page).to_have_url(f"{live_server.url}/teams/alpha/models/iris/versions/2/")
    expect(page.get_by_test_id("version-status")).to_have_text("processing")
    page.evaluate("window.__noReload = true")
    version = ModelVersion.objects.get(number=2)
    assert queued == [version.pk]
    model_version_inspect(version_id=version.pk)  # what the worker does
    expect(page.get_by_test_id("version-status")).to_have_text("ready", timeout=10_000)
    expect(page.get_by_test_id("signature")).to_contain_text("output_0")
    expect(page.get_by_test_id("framework")).to_contain_text("keras")
    assert page.evaluate("window.__noReload") is True
    page.screenshot(path=str(tmp_path / "version.png"), full_page=True)
