"""The Webhooks section of the team settings page, as the server renders it: admins manage in place, the secret is
shown once and escaped output throughout; others read a hint; outsiders get 404; CSRF is enforced."""

from __future__ import annotations

import pytest
from django.test import Client

from teams.choices import Role
from webhooks.models import Webhook, WebhookDelivery

pytestmark = pytest.mark.django_db

PANEL = "/teams/alpha/settings/webhooks/"


def client_for(member, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(member.user)
    return client


@pytest.fixture
def boss(make_member, team_a):
    return make_member(team=team_a, role=Role.ADMIN, username="boss")


def add(client: Client, **fields):
    data = {"operation": "create", "name": "ci", "url": "https://hooks.example.com/x", "events": ["release"]}
    return client.post(PANEL, {**data, **fields}, HTTP_HX_REQUEST="true")


def test_the_settings_page_loads_the_section(boss) -> None:
    page = client_for(boss).get("/teams/alpha/settings/")
    assert page.status_code == 200
    assert f'hx-get="{PANEL}"' in page.content.decode()


def test_an_admin_adds_a_webhook_and_sees_its_secret_once(boss) -> None:
    client = client_for(boss)
    response = add(client, name="<b>ci</b>", format="slack", events=["release", "job"])
    assert response.status_code == 200
    html = response.content.decode()
    assert response["Cache-Control"] == "no-store"
    assert 'data-testid="new-webhook"' in html and "whsec_" in html
    assert "&lt;b&gt;ci&lt;/b&gt;" in html and "<b>ci</b>" not in html
    webhook = Webhook.objects.get()
    assert (webhook.events, webhook.format) == (["release", "job"], "slack")
    again = client.get(PANEL).content.decode()
    assert "whsec_" not in again and "&lt;b&gt;ci&lt;/b&gt;" in again


def test_a_refusal_is_shown_in_place_and_changes_nothing(boss) -> None:
    client = client_for(boss)
    response = add(client, url="ftp://hooks.example.com/x")
    assert response.status_code == 400
    html = response.content.decode()
    assert "Use an http:// or https:// URL, not &#x27;ftp&#x27;." in html
    assert 'value="ftp://hooks.example.com/x"' in html  # what was typed stays
    response = add(client, events=["release", "deploy"])
    assert "Unknown event kinds [&#x27;deploy&#x27;]" in response.content.decode()
    assert not Webhook.objects.exists()


def test_an_admin_disables_tests_redelivers_and_deletes(boss, sent) -> None:
    client = client_for(boss)
    add(client)
    webhook = Webhook.objects.get()
    html = client.post(PANEL, {"operation": "test", "webhook": webhook.pk}).content.decode()
    assert "Test event queued for &#x27;ci&#x27;" in html
    delivery = WebhookDelivery.objects.get()
    assert f'data-delivery="{delivery.pk}"' in html
    client.post(PANEL, {"operation": "redeliver", "webhook": webhook.pk, "delivery": delivery.pk})
    assert WebhookDelivery.objects.filter(event_id=delivery.event_id).count() == 2
    html = client.post(PANEL, {"operation": "enable", "webhook": webhook.pk, "enabled": "false"}).content.decode()
    assert "Webhook &#x27;ci&#x27; disabled." in html
    assert Webhook.objects.get().enabled is False
    refused = client.post(PANEL, {"operation": "test", "webhook": webhook.pk})
    assert refused.status_code == 400
    assert "is disabled: enable it first" in refused.content.decode()
    client.post(PANEL, {"operation": "delete", "webhook": webhook.pk})
    assert not Webhook.objects.exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER])
def test_others_read_a_hint_and_cannot_change(role, boss, make_member, team_a) -> None:
    add(client_for(boss))
    member = client_for(make_member(team=team_a, role=role))
    html = member.get(PANEL).content.decode()
    assert "An admin of alpha manages its webhooks." in html
    assert "hooks.example.com" not in html
    assert add(member, name="mine").status_code == 403
    webhook = Webhook.objects.get()
    assert member.post(PANEL, {"operation": "delete", "webhook": webhook.pk}).status_code == 403
    assert Webhook.objects.count() == 1


def test_another_team_gets_404(boss, make_member, team_b) -> None:
    add(client_for(boss))
    outsider = client_for(make_member(team=team_b, role=Role.ADMIN))
    assert outsider.get(PANEL).status_code == 404
    webhook = Webhook.objects.get()
    assert outsider.post(PANEL, {"operation": "delete", "webhook": webhook.pk}).status_code == 404
    bravo = outsider.post("/teams/bravo/settings/webhooks/", {"operation": "delete", "webhook": webhook.pk})
    assert bravo.status_code == 404
    assert Webhook.objects.count() == 1


def test_csrf_is_enforced(boss) -> None:
    assert add(client_for(boss, csrf=True)).status_code == 403
    assert not Webhook.objects.exists()
