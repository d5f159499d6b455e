"""A failed parity report in the browser: developers are told who can accept it and see no Deploy button that would
be refused; an admin accepts it with a reason on the version page, and the Deploy card appears at once."""

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
from tests.deployments.test_endpoint_apis import add_version
from tests.teams.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("artifact_dir")]

FAILED = {"passed": False, "reason": "max abs diff 0.31 > 0.0001 on probs", "outputs": [], "rows": 8}


def test_an_admin_accepts_a_failed_parity_on_the_version_page(
    browser: Browser, live_server, make_member, team_a, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    builder = Actor(user=make_member(team=team_a, role=Role.DEVELOPER, username="dev").user)
    make_member(team=team_a, role=Role.ADMIN, username="ada")
    model = registered_model_create(actor=builder, team=team_a, name="iris")
    v1, v2 = (add_version(model, builder, tmp_path, seed) for seed in (1, 2))
    ModelVersion.objects.filter(pk=v2.pk).update(parity={**FAILED, "tolerance": {}, "input_source": "synthetic"})
    endpoint_create(actor=builder, model=model, name="iris", version=v1)

    def page_of(username: str, path: str):
        page = browser.new_page()
        page.goto(f"{live_server.url}/accounts/login/?next={path}")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        return page

    developer = page_of("dev", f"/teams/alpha/models/iris/versions/{v2.number}/")
    expect(developer.get_by_test_id("parity")).to_contain_text("until an admin of alpha accepts the difference")
    expect(developer.get_by_test_id("parity-accept")).to_have_count(0)
    expect(developer.get_by_test_id("deploy")).to_have_count(0)
    # Nor does the endpoint page offer a release the server would refuse.
    developer.goto(f"{live_server.url}/endpoints/iris/")
    expect(developer.get_by_test_id("change")).to_be_visible()
    expect(developer.locator(f"[data-action=promote-{v2.number}]")).to_have_count(0)

    admin = page_of("ada", f"/teams/alpha/models/iris/versions/{v2.number}/")
    admin.evaluate("window.__noReload = true")
    form = admin.get_by_test_id("parity-accept")
    form.get_by_role("button").click()  # no reason: the browser asks for one, nothing is sent
    assert not AuditEvent.objects.filter(action="version.parity_override").exists()
    form.get_by_label("Why is this difference acceptable?").fill("ranking is all we serve; the order is kept")
    form.get_by_role("button").click()
    expect(admin.get_by_test_id("parity")).to_contain_text("failed, accepted by ada")
    expect(admin.get_by_test_id("parity")).to_contain_text("ranking is all we serve")
    expect(admin.get_by_test_id("deploy")).to_be_visible()
    assert admin.evaluate("window.__noReload") is True
    event = AuditEvent.objects.get(action="version.parity_override")
    assert event.data["reason"] == "ranking is all we serve; the order is kept"
    admin.goto(f"{live_server.url}/endpoints/iris/")
    expect(admin.locator(f"[data-action=promote-{v2.number}]")).to_be_visible()
