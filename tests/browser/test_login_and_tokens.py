"""A person logs in, creates a token through the htmx form, sees it once, uses it, and revokes it."""

from __future__ import annotations

import json
import urllib.request

import pytest
from playwright.sync_api import Browser, expect

from teams.choices import Role
from teams.models import ApiToken
from tests.teams.factories import PASSWORD, create_membership, create_team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def api_get(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_login_create_use_and_revoke_a_token(browser: Browser, live_server, tmp_path) -> None:
    team = create_team(slug="alpha", name="Alpha")
    membership = create_membership(team=team, role=Role.DEVELOPER, user__username="dana")
    create_team(slug="bravo")  # another team, which dana must not see
    create_membership(team=create_team(slug="charlie", name="Charlie"), user=membership.user, role=Role.VIEWER)
    page = browser.new_page()
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/")

    page.fill("#id_username", "dana")
    page.fill("#id_password", "wrong")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("didn't match")

    page.fill("#id_username", "dana")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    # The login lands on a team (the first, with none chosen before), not on a list.
    expect(page).to_have_url(f"{live_server.url}/teams/alpha/")
    expect(page.get_by_role("heading", name="Alpha")).to_be_visible()
    page.get_by_test_id("team-switcher").locator("summary").click()
    page.get_by_test_id("all-teams").click()
    expect(page.get_by_role("heading", name="Your teams")).to_be_visible()
    expect(page.locator("table.list")).to_contain_text("alpha")
    expect(page.locator("table.list")).not_to_contain_text("bravo")

    # The team switcher lists dana's teams and moves between them.
    switcher = page.get_by_test_id("team-switcher")
    switcher.locator("summary").click()
    expect(switcher.get_by_role("link")).to_have_text(["alpha", "charlie", "All your teams"])
    switcher.get_by_role("link", name="charlie").click()
    expect(page).to_have_url(f"{live_server.url}/teams/charlie/")
    expect(switcher.locator("summary")).to_contain_text("charlie")
    expect(page.get_by_text("Your role: viewer")).to_be_visible()
    switcher.locator("summary").click()
    switcher.get_by_role("link", name="alpha").click()
    expect(switcher.locator("summary")).to_contain_text("alpha")

    page.get_by_role("link", name="Tokens").first.click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    # The role menu offers nothing above dana's own role.
    assert page.locator("#id_role option").all_inner_texts() == ["Viewer", "Developer"]
    page.evaluate("window.__noReload = true")
    page.fill("#id_name", "ci-pipeline")
    page.select_option("#id_role", "developer")
    page.get_by_role("button", name="Create token").click()
    shown = page.locator("#new-token-value")
    expect(shown).to_be_visible()
    assert page.evaluate("window.__noReload") is True  # htmx swapped the panel in place
    raw = shown.inner_text().strip()
    # One click copies it.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_test_id("copy-token").click()
    expect(page.get_by_test_id("copy-token")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == raw
    token = ApiToken.objects.get(name="ci-pipeline")
    assert raw.startswith(token.prefix)
    assert token.user == membership.user
    assert token.role == "developer"
    row = page.locator(f"tr[data-token-id='{token.pk}']")
    expect(row).to_contain_text(token.prefix)
    last_used = row.locator("td[data-col=last-used]")
    expect(last_used).to_have_text("never")
    page.screenshot(path=str(tmp_path / "tokens.png"), full_page=True)

    me = api_get(f"{live_server.url}/api/v1/me", raw)
    assert me["username"] == "dana"
    assert me["teams"] == [{"slug": "alpha", "name": "Alpha", "role": "developer"}]

    page.reload()
    expect(page.locator("#new-token-value")).to_have_count(0)  # shown once, never again
    expect(last_used).not_to_have_text("never")  # the API call above was recorded
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("revoked")
    token.refresh_from_db()
    assert token.revoked_at is not None
    with pytest.raises(urllib.error.HTTPError) as refused:
        api_get(f"{live_server.url}/api/v1/me", raw)
    assert refused.value.code == 401

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server.url}/accounts/login/")
