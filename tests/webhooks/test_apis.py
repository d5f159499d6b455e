"""The webhooks API: admins manage a team's webhooks; the secret is shown once; weaker roles get 403, other teams
404; bad input gets a precise 400 and changes nothing; test and redeliver queue deliveries."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from teams.choices import Role
from teams.models import AuditEvent
from tests.webhooks.receiver import receiver
from webhooks.deliveries import delivery_attempt
from webhooks.models import Webhook, WebhookDelivery

pytestmark = pytest.mark.django_db

NEW = {"name": "ci", "url": "https://hooks.example.com/modeldeck", "events": ["release", "alert"]}


@pytest.fixture
def boss(make_member, team_a):
    return make_member(team=team_a, role=Role.ADMIN, username="boss")


def create(client, body=None, team="alpha"):
    return client.post(f"/api/v1/teams/{team}/webhooks", body or NEW, format="json")


def test_an_admin_creates_a_webhook_and_sees_its_secret_once(boss) -> None:
    client = boss.token_client()
    response = create(client)
    assert response.status_code == 201, response.json()
    body = response.json()
    secret = body.pop("secret")
    assert secret.startswith("whsec_") and len(secret) > 40
    assert response["Cache-Control"] == "no-store"
    webhook = Webhook.objects.get()
    assert body == {
        "id": webhook.pk,
        "name": "ci",
        "url": "https://hooks.example.com/modeldeck",
        "events": ["release", "alert"],
        "format": "modeldeck",
        "enabled": True,
        "created_by": "boss",
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    for path in ("", f"/{webhook.pk}", f"/{webhook.pk}/deliveries"):
        got = client.get(f"/api/v1/teams/alpha/webhooks{path}")
        assert got.status_code == 200
        assert secret not in got.content.decode()
        assert "secret" not in got.content.decode()
    assert client.get(f"/api/v1/teams/alpha/webhooks/{webhook.pk}").json() == body
    (event,) = AuditEvent.objects.filter(action="webhook.create")
    assert event.actor is not None
    assert (event.actor.username, event.target_id, event.data["events"]) == (
        "boss",
        str(webhook.pk),
        ["release", "alert"],
    )
    assert secret not in json.dumps(event.data)


def test_an_admin_changes_and_deletes_a_webhook_audited(boss, sent) -> None:
    client = boss.session_client()
    client.get("/api/v1/me")  # a session needs its CSRF cookie for writes
    webhook_id = create(boss.token_client()).json()["id"]
    url = f"/api/v1/teams/alpha/webhooks/{webhook_id}"
    changed = boss.token_client().patch(url, {"enabled": False, "format": "slack"}, format="json")
    assert changed.status_code == 200, changed.json()
    assert (changed.json()["enabled"], changed.json()["format"]) == (False, "slack")
    assert boss.token_client().delete(url).status_code == 204
    assert not Webhook.objects.exists()
    actions = list(
        AuditEvent.objects.filter(action__startswith="webhook.").order_by("pk").values_list("action", "data")
    )
    assert [a for a, _ in actions] == ["webhook.create", "webhook.change", "webhook.delete"]
    assert actions[1][1]["changes"] == {"enabled": False, "format": "slack"}


def test_a_session_write_needs_its_csrf_token(boss) -> None:
    response = create(boss.session_client())
    assert response.status_code == 403
    assert not Webhook.objects.exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER])
def test_viewers_and_developers_cannot_see_or_manage_webhooks(role, boss, make_member, team_a) -> None:
    webhook_id = create(boss.token_client()).json()["id"]
    client = make_member(team=team_a, role=role).token_client()
    assert client.get("/api/v1/teams/alpha/webhooks").status_code == 403
    assert client.get(f"/api/v1/teams/alpha/webhooks/{webhook_id}").status_code == 403
    assert create(client, {**NEW, "name": "mine"}).status_code == 403
    assert (
        client.patch(f"/api/v1/teams/alpha/webhooks/{webhook_id}", {"enabled": False}, format="json").status_code == 403
    )
    assert client.delete(f"/api/v1/teams/alpha/webhooks/{webhook_id}").status_code == 403
    assert client.post(f"/api/v1/teams/alpha/webhooks/{webhook_id}/test").status_code == 403
    assert list(Webhook.objects.values_list("name", "enabled")) == [("ci", True)]


def test_another_team_sees_nothing(boss, make_member, team_b, sent) -> None:
    webhook_id = create(boss.token_client()).json()["id"]
    delivery = boss.token_client().post(f"/api/v1/teams/alpha/webhooks/{webhook_id}/test").json()
    outsider = make_member(team=team_b, role=Role.ADMIN).token_client()
    alpha = f"/api/v1/teams/alpha/webhooks/{webhook_id}"
    bravo = f"/api/v1/teams/bravo/webhooks/{webhook_id}"
    for path in ("/api/v1/teams/alpha/webhooks", alpha, f"{alpha}/deliveries", bravo, f"{bravo}/deliveries"):
        assert outsider.get(path).status_code == 404, path
    assert outsider.patch(bravo, {"enabled": False}, format="json").status_code == 404
    assert outsider.delete(bravo).status_code == 404
    assert outsider.post(f"{bravo}/test").status_code == 404
    assert outsider.post(f"{bravo}/deliveries/{delivery['id']}/redeliver").status_code == 404
    assert outsider.get("/api/v1/teams/bravo/webhooks").json() == []
    assert Webhook.objects.get().enabled is True
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({**NEW, "url": "ftp://hooks.example.com/x"}, "url", "Use an http:// or https:// URL, not 'ftp'."),
        ({**NEW, "url": "javascript:alert(1)"}, "url", "Use an http:// or https:// URL, not 'javascript'."),
        (
            {**NEW, "url": "https://user:pw@hooks.example.com/x"},
            "url",
            "Put no credentials in the URL: the receiver checks the signature instead.",
        ),
        ({**NEW, "url": "https:///x"}, "url", "The URL has no host."),
        (
            {**NEW, "url": "https://hooks.example.com:99999/x"},
            "url",
            "The URL is malformed (Port out of range 0-65535).",
        ),
        ({**NEW, "events": ["release", "deploy"]}, "events", None),
        ({**NEW, "events": []}, "events", None),
        ({**NEW, "format": "teams"}, "format", None),
        ({**NEW, "name": ""}, "name", None),
    ],
)
def test_bad_input_is_refused_precisely_and_creates_nothing(boss, body, field, message) -> None:
    response = create(boss.token_client(), body)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["detail"]
    if message:
        assert error["message"] == message
    if field == "events" and body["events"]:
        assert error["detail"]["events"] == {"1": ['"deploy" is not a valid choice.']}
    assert not Webhook.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="webhook.").exists()


def test_malformed_json_is_refused(boss) -> None:
    response = boss.token_client().post(
        "/api/v1/teams/alpha/webhooks", '{"name": "ci", "url": ', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert response.json()["error"]["message"] == "The request body could not be parsed."
    assert "JSON parse error" in json.dumps(response.json()["error"]["detail"])
    assert not Webhook.objects.exists()


def test_a_taken_name_is_a_conflict(boss) -> None:
    assert create(boss.token_client()).status_code == 201
    response = create(boss.token_client(), {**NEW, "url": "https://other.example/x"})
    assert response.status_code == 409
    assert response.json()["error"]["message"] == "Team 'alpha' has a webhook named 'ci' already."
    assert Webhook.objects.count() == 1


def test_private_addresses_are_refused_when_the_setting_says_so(boss, settings) -> None:
    settings.MODELDECK_WEBHOOK_ALLOW_PRIVATE = False
    for url in ("http://127.0.0.1:8000/hook", "http://10.1.2.3/hook", "http://[::1]/hook", "http://localhost/hook"):
        response = create(boss.token_client(), {**NEW, "url": url})
        assert response.status_code == 400, url
        assert response.json()["error"]["code"] == "private_address"
        assert "private or reserved address" in response.json()["error"]["message"]
    assert not Webhook.objects.exists()


def test_private_addresses_are_refused_at_send_time_too(boss, settings, sent) -> None:
    with receiver() as hook:
        webhook_id = create(boss.token_client(), {**NEW, "url": hook.url}).json()["id"]
        delivery = boss.token_client().post(f"/api/v1/teams/alpha/webhooks/{webhook_id}/test").json()
        settings.MODELDECK_WEBHOOK_ALLOW_PRIVATE = False  # as if the host had come to resolve to a private address
        done = delivery_attempt(delivery_id=delivery["id"])
    assert done is not None
    assert done.last_error.startswith("The host '127.0.0.1' is a private or reserved address")
    assert hook.requests == []


def test_send_test_and_redeliver(boss, sent, django_capture_on_commit_callbacks) -> None:
    client = boss.token_client()
    with receiver(answers=[500]) as hook:
        created = create(client, {**NEW, "url": hook.url}).json()
        base = f"/api/v1/teams/alpha/webhooks/{created['id']}"
        with django_capture_on_commit_callbacks(execute=True):
            ping = client.post(f"{base}/test")
        assert ping.status_code == 202, ping.json()
        assert (ping.json()["kind"], ping.json()["state"], ping.json()["attempts"]) == ("ping", "pending", 0)
        delivery_attempt(delivery_id=ping.json()["id"])
        listed = client.get(f"{base}/deliveries").json()
        assert listed["count"] == 1
        (first,) = listed["results"]
        assert (first["state"], first["attempts"], first["last_status_code"]) == ("pending", 1, 500)
        assert first["last_error"] == "The receiver answered 500."

        again = client.post(f"{base}/deliveries/{first['id']}/redeliver")
        assert again.status_code == 202, again.json()
        assert again.json()["event_id"] == first["event_id"] and again.json()["id"] != first["id"]
        delivery_attempt(delivery_id=again.json()["id"])
    assert [json.loads(r.body)["type"] for r in hook.requests] == ["ping", "ping"]
    assert json.loads(hook.requests[0].body)["data"] == {"webhook": "ci", "by": "boss"}
    assert hook.requests[1].signature_valid(created["secret"])
    assert [d["state"] for d in client.get(f"{base}/deliveries").json()["results"]] == ["succeeded", "pending"]
    assert sent.ids[:2] == [ping.json()["id"], ping.json()["id"]]  # queued, then its retry after the 500
    assert client.post(f"{base}/deliveries/00000000-0000-0000-0000-000000000000/redeliver").status_code == 404


def test_a_disabled_webhook_cannot_be_tested_or_redelivered(boss, sent) -> None:
    client = boss.token_client()
    webhook_id = create(client).json()["id"]
    base = f"/api/v1/teams/alpha/webhooks/{webhook_id}"
    delivery = client.post(f"{base}/test").json()
    client.patch(base, {"enabled": False}, format="json")
    for path in (f"{base}/test", f"{base}/deliveries/{delivery['id']}/redeliver"):
        response = client.post(path)
        assert response.status_code == 409
        assert response.json()["error"]["message"] == "The webhook 'ci' is disabled: enable it first."
    assert WebhookDelivery.objects.count() == 1


def test_the_lists_read_a_fixed_number_of_queries(boss, sent) -> None:
    client = boss.token_client()

    def queries(path: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(path).status_code == 200
        return len(captured)

    webhook_id = create(client).json()["id"]
    client.post(f"/api/v1/teams/alpha/webhooks/{webhook_id}/test")
    one = (queries("/api/v1/teams/alpha/webhooks"), queries(f"/api/v1/teams/alpha/webhooks/{webhook_id}/deliveries"))
    for n in range(3):
        create(client, {**NEW, "name": f"more-{n}"})
        client.post(f"/api/v1/teams/alpha/webhooks/{webhook_id}/test")
    many = (queries("/api/v1/teams/alpha/webhooks"), queries(f"/api/v1/teams/alpha/webhooks/{webhook_id}/deliveries"))
    assert one == many
