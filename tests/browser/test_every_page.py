"""Every page at a desktop's width (1440 x 900) and a phone's (390 x 844): nothing spills out of its box or makes the
page scroll sideways, no template syntax shows, and a screenshot of each is kept with the test's files."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from deployments.services import endpoint_create, release_promote
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.browser.test_live_pages import screenshots
from tests.deployments.test_endpoint_apis import add_version
from tests.teams.factories import PASSWORD

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("artifact_dir"),
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators:Warning"),
]

PAGES = {
    "team": "/teams/alpha/",
    "teams": "/teams/",
    "models": "/teams/alpha/models/",
    "model": "/teams/alpha/models/iris/",
    "version": "/teams/alpha/models/iris/versions/2/",
    "endpoints": "/teams/alpha/endpoints/",
    "endpoint": "/endpoints/iris-staging/",
    "approvals": "/teams/alpha/approvals/",
    "tokens": "/teams/alpha/tokens/",
    "audit": "/teams/alpha/audit/",
    "settings": "/teams/alpha/settings/",
    "not-found": "/teams/alpha/models/nothing-here/",
}


def test_every_page_fits_a_desktop_and_a_phone(
    browser: Browser, live_server, make_member, team_a, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    admin = make_member(team=team_a, role=Role.ADMIN, username="ada")
    actor = Actor(user=admin.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris", description="flowers, with a long name")
    v1, v2 = (add_version(model, actor, tmp_path, seed) for seed in (1, 2))
    endpoint = endpoint_create(actor=actor, model=model, name="iris-staging", version=v1, reason="first")
    release_promote(actor=actor, endpoint=endpoint, version=v2, canary_percent=10, reason="a canary with a reason")

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/accounts/login/")
    screenshots(page, tmp_path, "login")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{live_server.url}/teams/alpha/")
    for name, path in PAGES.items():
        page.set_viewport_size({"width": 1440, "height": 900})
        answer = page.goto(f"{live_server.url}{path}")
        assert answer is not None and answer.status == (404 if name == "not-found" else 200), name
        page.wait_for_load_state("networkidle")
        screenshots(page, tmp_path, name)
