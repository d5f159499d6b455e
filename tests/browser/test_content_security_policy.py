"""Every page works under the Content-Security-Policy: Chromium reports no violation, and the scripts run."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, expect

from deployments.services import endpoint_create, release_promote
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version
from tests.teams.factories import PASSWORD, create_membership, create_team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("artifact_dir")]


def test_the_pages_raise_no_policy_violation(browser: Browser, live_server, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    membership = create_membership(team=create_team(slug="alpha"), role=Role.ADMIN, user__username="cleo")
    membership.user.is_staff = membership.user.is_superuser = True
    membership.user.save()
    actor = Actor(user=membership.user)
    model = registered_model_create(actor=actor, team=membership.team, name="iris")
    v1, v2 = (add_version(model, actor, tmp_path, seed) for seed in (1, 2))
    endpoint = endpoint_create(actor=actor, model=model, name="iris-live", version=v1)
    release_promote(actor=actor, endpoint=endpoint, version=v2, reason="newer")

    page = browser.new_page()
    violations: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(f"{page.url}: {message.text}")

    page.on("console", watch)
    questions: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    # Violations the console might word differently are caught as the DOM event the policy fires for each.
    page.add_init_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "cleo")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{live_server.url}/teams/alpha/")  # the login lands on the team

    for path in [
        "/teams/",
        "/teams/alpha/",
        "/teams/alpha/tokens/",
        "/teams/alpha/audit/",
        "/teams/alpha/models/iris/",
        f"/teams/alpha/models/iris/versions/{v2.number}/",
        "/endpoints/iris-live/",
        "/admin/",
        "/api/docs/",
    ]:
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.ok, path
        assert "default-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__violations") == [], path
        if path == "/endpoints/iris-live/":
            # The scripts ran and the stylesheet sized the charts (14rem: app.css, no style attribute): Chart.js drew.
            expect(page.locator("#chart-requests")).to_have_attribute("style", re.compile(r"height: 224px"))
            page.once("dialog", dismiss)
            page.locator("button[data-action=rollback]").click()
            expect(page.locator("button[data-action=rollback]")).to_be_visible()
            assert questions and questions[0].startswith("Roll back iris-live")
        if path == "/api/docs/":
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("ModelDeck API")
    assert violations == []
