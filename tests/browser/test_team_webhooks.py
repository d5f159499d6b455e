"""Webhooks on the team settings page in a real browser: an admin adds one (the secret shown once, with its copy
button), sends a test that a real receiver verifies with that secret, reads the delivery log, redelivers, disables
and deletes, all in place; a refusal is shown in place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from teams.choices import Role
from teams.models import AuditEvent
from tests.browser.test_live_pages import screenshots
from tests.browser.test_team_settings import log_in
from tests.webhooks.receiver import receiver
from webhooks.deliveries import delivery_attempt
from webhooks.models import Webhook

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_manages_webhooks_in_place(
    browser: Browser, live_server, make_member, team_a, tmp_path: Path, monkeypatch
) -> None:
    # No worker in the test: a delivery's task runs at once, in the live server's thread.
    monkeypatch.setattr(
        "webhooks.tasks.webhook_delivery_task.apply_async",
        lambda args, countdown=None: None if countdown else delivery_attempt(delivery_id=args[0]),
    )
    make_member(team=team_a, role=Role.ADMIN, username="ada")
    page = log_in(browser, live_server.url, "ada")
    page.evaluate("window.__noReload = true")
    section = page.get_by_test_id("webhooks")
    expect(section).to_contain_text("No webhooks yet")

    with receiver(answers=[500]) as hook:
        add = page.get_by_test_id("add-webhook")
        add.get_by_label("Name").fill("ci")
        add.get_by_label("URL").fill("ftp://hooks.example.com/x")
        add.get_by_role("button", name="Add webhook").click()
        expect(page.get_by_test_id("webhooks-error")).to_have_text("Use an http:// or https:// URL, not 'ftp'.")
        assert not Webhook.objects.exists()

        add = page.get_by_test_id("add-webhook")
        add.get_by_label("URL").fill(hook.url)
        add.get_by_label("job").check()
        add.get_by_label("Format").select_option("modeldeck")
        add.get_by_role("button", name="Add webhook").click()
        expect(page.get_by_test_id("new-webhook")).to_contain_text("it will not be shown again")
        expect(page.get_by_test_id("copy-secret")).to_be_visible()
        secret = page.locator("#new-webhook-secret").inner_text().strip()
        assert Webhook.objects.get().events == ["release", "alert", "job"]
        screenshots(page, tmp_path, "team-webhooks-created")

        row = page.locator("article[data-webhook=ci]")
        row.get_by_role("button", name="Send test").click()
        expect(page.get_by_test_id("webhooks-done")).to_contain_text("Test event queued for 'ci'")
        expect(page.get_by_test_id("new-webhook")).to_have_count(0)  # the secret is gone once the panel changes
        log = page.locator("article[data-webhook=ci] [data-testid=deliveries]")
        expect(log.locator("tbody tr")).to_have_count(1)
        expect(log.locator("tbody tr").first).to_contain_text("ping")
        expect(log.locator("tbody tr").first).to_contain_text("The receiver answered 500.")

        log.get_by_role("button", name="Redeliver").first.click()
        expect(log.locator("tbody tr")).to_have_count(2)
        expect(log.locator("tbody tr").first).to_contain_text("succeeded")
        expect(log.locator("tbody tr").first).to_contain_text("200")

    assert [json.loads(r.body)["type"] for r in hook.requests] == ["ping", "ping"]
    assert all(r.signature_valid(secret) for r in hook.requests)
    screenshots(page, tmp_path, "team-webhooks-log")

    page.locator("article[data-webhook=ci]").get_by_role("button", name="Disable").click()
    expect(page.locator("article[data-webhook=ci] .badge").first).to_have_text("disabled")
    expect(page.locator("article[data-webhook=ci]").get_by_role("button", name="Send test")).to_be_disabled()
    assert Webhook.objects.get().enabled is False

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("article[data-webhook=ci]").get_by_role("button", name="Delete").click()
    expect(page.get_by_test_id("webhooks-done")).to_contain_text("Webhook 'ci' deleted")
    assert not Webhook.objects.exists()
    assert page.evaluate("window.__noReload") is True
    actions = list(
        AuditEvent.objects.filter(action__startswith="webhook.").order_by("pk").values_list("action", flat=True)
    )
    assert actions == ["webhook.create", "webhook.test", "webhook.redeliver", "webhook.change", "webhook.delete"]


def test_a_developer_sees_no_webhook(browser: Browser, live_server, make_member, team_a) -> None:
    make_member(team=team_a, role=Role.ADMIN, username="ada")
    make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    page = log_in(browser, live_server.url, "dev")
    expect(page.get_by_test_id("webhooks")).to_contain_text("An admin of alpha manages its webhooks.")
    expect(page.get_by_test_id("add-webhook")).to_have_count(0)
