"""The confirm step in the browser shows how a version's signature differs from the primary's before anything is
released, and releases it only once the change is allowed."""

from __future__ import annotations

import hashlib

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from deployments.models import Release
from deployments.services import endpoint_create
from registry.services.versions import Upload, model_version_create, registered_model_create
from teams.choices import Role
from teams.models import AuditEvent
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version
from tests.registry.model_files import onnx_file
from tests.teams.factories import PASSWORD, create_membership, create_team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("artifact_dir")]


@pytest.fixture
def page(browser: Browser, live_server, tmp_path, monkeypatch) -> Page:
    """Gus, a developer, on the page of "iris" (v1: probs [-1, 3]); v2 keeps that signature, v3 answers [-1, 2]."""
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    membership = create_membership(team=create_team(slug="alpha"), role=Role.DEVELOPER, user__username="gus")
    actor = Actor(user=membership.user)
    model = registered_model_create(actor=actor, team=membership.team, name="iris")
    v1 = add_version(model, actor, tmp_path, 1)
    add_version(model, actor, tmp_path, 2)
    path = onnx_file(tmp_path / "two-classes.onnx", classes=2, seed=3)
    upload = Upload(path, path.name, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    model_version_create(actor=actor, model=model, upload=upload)
    endpoint_create(actor=actor, model=model, name="iris", version=v1)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/accounts/login/?next=/endpoints/iris/")
    page.fill("#id_username", "gus")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_test_id("current-release")).to_contain_text("release #1")
    return page


def live() -> tuple[int, int, int | None, int]:
    release = Release.objects.select_related("primary", "canary").order_by("-number").first()
    assert release is not None
    return (
        release.number,
        release.primary.number,
        release.canary.number if release.canary else None,
        release.canary_percent,
    )


def test_the_confirm_step_shows_the_differences_first(page: Page) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    expect(page.locator("button[data-action=promote-3]")).to_contain_text("signature differs")
    expect(page.locator("button[data-action=promote-2]")).not_to_contain_text("signature differs")

    page.locator("button[data-action=promote-3]").click()
    dialog = page.get_by_test_id("signature-confirm")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("Promote v3 on iris? It replaces v1 for all traffic.")
    rows = dialog.locator("table[data-testid=signature-diff] tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td")).to_have_text(["output probs", "different shape", "[-1, 3]", "[-1, 2]"])
    expect(dialog.locator("thead th")).to_have_text(["Tensor", "Problem", "Primary v1", "This version v3"])
    # Nothing is released while the dialog asks; the release button waits for the checkbox.
    confirm = dialog.get_by_role("button", name="Release with the change")
    expect(confirm).to_be_disabled()
    assert live() == (1, 1, None, 0)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert live() == (1, 1, None, 0)

    # The canary form asks the same for the version chosen in it.
    page.select_option("select[name=version]", "3")
    page.fill("input[name=canary_percent]", "10")
    page.locator("button[data-action=canary]").click()
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("Send 10% of iris traffic to v3 (primary stays v1)?")
    expect(rows.first.locator("td")).to_have_text(["output probs", "different shape", "[-1, 3]", "[-1, 2]"])
    dialog.get_by_label("Allow the signature change").check()
    expect(confirm).to_be_enabled()
    confirm.click()
    expect(page.get_by_test_id("current-release")).to_contain_text("release #2")
    expect(page.get_by_test_id("current-release")).to_contain_text("canary v3 takes 10% of traffic")
    assert live() == (2, 1, 3, 10)
    change = AuditEvent.objects.get(action="endpoint.canary").data["signature_change"]
    assert [(d["candidate"], d["role"], d["name"], d["problem"]) for d in change] == [(3, "canary", "probs", "shape")]
    assert errors == []


def test_a_compatible_version_gets_the_plain_confirm(page: Page) -> None:
    messages: list[str] = []

    def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.locator("button[data-action=promote-2]").click()
    expect(page.get_by_test_id("current-release")).to_contain_text("release #2")
    assert messages == ["Promote v2 on iris? It replaces v1 for all traffic."]
    assert live() == (2, 2, None, 0)
    assert "signature_change" not in AuditEvent.objects.get(action="endpoint.promote").data
