"""Members, roles and the team's upload settings in the browser: admins change them in place (audited), others read
them, and the last admin cannot be demoted."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from teams.choices import Role
from teams.models import AuditEvent, Membership, Team
from tests.browser.test_live_pages import screenshots
from tests.teams.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(browser: Browser, url: str, username: str) -> Page:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(f"{url}/accounts/login/?next=/teams/alpha/settings/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/teams/alpha/settings/")
    return page


def test_an_admin_manages_members_and_settings_in_place(
    browser: Browser, live_server, make_member, team_a, tmp_path: Path
) -> None:
    make_member(team=team_a, role=Role.ADMIN, username="ada")
    newcomer = make_member(team=Team.objects.create(slug="elsewhere"), role=Role.VIEWER, username="noor")
    page = log_in(browser, live_server.url, "ada")
    page.evaluate("window.__noReload = true")

    add = page.get_by_test_id("add-member")
    add.get_by_label("Username").fill("noor")
    add.get_by_label("Role").select_option("developer")
    add.get_by_role("button", name="Add member").click()
    expect(page.get_by_test_id("settings-done")).to_have_text("noor is a developer of alpha now.")
    row = page.locator("tr[data-member=noor]")
    expect(row.locator("select")).to_have_value("developer")
    assert Membership.objects.get(team=team_a, user=newcomer.user).role == "developer"

    add = page.get_by_test_id("add-member")
    add.get_by_label("Username").fill("nobody")
    add.get_by_role("button", name="Add member").click()
    expect(page.get_by_role("alert")).to_contain_text("No user named 'nobody'")

    # The last admin cannot step down.
    ada = page.locator("tr[data-member=ada]")
    ada.locator("select").select_option("viewer")
    ada.get_by_role("button", name="Change").click()
    expect(page.get_by_role("alert")).to_contain_text("is the last admin of team 'alpha'")
    assert Membership.objects.get(team=team_a, user__username="ada").role == "admin"

    options = page.get_by_test_id("team-options")
    options.get_by_label("TFLite").uncheck()
    options.get_by_label("Accept pickle").check()
    options.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("settings-done")).to_have_text("Settings saved.")
    team_a.refresh_from_db()
    assert (team_a.auto_convert_targets, team_a.trusted_pickle) == (["onnx"], True)

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr[data-member=noor]").get_by_role("button", name="Remove").click()
    expect(page.get_by_test_id("settings-done")).to_contain_text("noor left alpha")
    assert not Membership.objects.filter(team=team_a, user=newcomer.user).exists()
    assert page.evaluate("window.__noReload") is True
    actions = list(AuditEvent.objects.filter(team=team_a).order_by("pk").values_list("action", flat=True))
    assert actions[-3:] == ["membership.set", "team.settings", "membership.remove"]
    screenshots(page, tmp_path, "team-settings")


def test_a_developer_reads_but_cannot_change(browser: Browser, live_server, make_member, team_a) -> None:
    make_member(team=team_a, role=Role.ADMIN, username="ada")
    make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    page = log_in(browser, live_server.url, "dev")
    expect(page.get_by_test_id("members")).to_contain_text("ada")
    expect(page.get_by_test_id("add-member")).to_have_count(0)
    expect(page.get_by_test_id("members").locator("select")).to_have_count(0)
    expect(page.get_by_test_id("team-options").locator("input[name=trusted_pickle]")).to_be_disabled()
    # The server refuses what the page does not offer.
    answer = page.request.post(
        f"{live_server.url}/teams/alpha/settings/",
        form={"operation": "settings", "trusted_pickle": "on"},
        headers={"X-CSRFToken": next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")},
    )
    assert answer.status == 403
    team_a.refresh_from_db()
    assert team_a.trusted_pickle is False
