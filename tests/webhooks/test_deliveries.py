"""Deliveries: signed with the secret shown once, retried with backoff on a clock the test controls, never following a
redirect or waiting past the timeout, swept when their task was lost, pruned after 30 days."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from common.events import team_event_publish
from tests.webhooks.receiver import receiver
from webhooks import deliveries, transport
from webhooks.choices import DeliveryState
from webhooks.deliveries import (
    BACKOFF,
    MAX_ATTEMPTS,
    deliveries_prune,
    deliveries_resend_due,
    delivery_attempt,
)
from webhooks.models import Webhook, WebhookDelivery
from webhooks.payloads import slack_text
from webhooks.secrets import webhook_secret_decrypt

pytestmark = pytest.mark.django_db


def publish_job(team: str = "alpha") -> WebhookDelivery:
    team_event_publish(team=team, kind="job", data={"id": 7, "kind": "convert", "status": "succeeded"})
    return WebhookDelivery.objects.get()


def test_an_event_is_delivered_signed_with_the_secret_shown_once(
    make_webhook, sent, django_capture_on_commit_callbacks
) -> None:
    with receiver() as hook:
        created = make_webhook(hook.url)
        with django_capture_on_commit_callbacks(execute=True):
            delivery = publish_job()
        assert sent.ids == [str(delivery.pk)]  # sent to the broker once committed
        done = delivery_attempt(delivery_id=delivery.pk)

    assert done is not None
    assert (done.state, done.attempts, done.last_status_code, done.last_error) == ("succeeded", 1, 200, "")
    (got,) = hook.requests
    assert got.signature_valid(created.secret)
    assert not got.signature_valid(created.secret + "x")
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"].startswith("ModelDeck-Webhooks/")
    assert got.headers["X-ModelDeck-Event"] == "job"
    assert got.headers["X-ModelDeck-Delivery"] == str(delivery.pk)
    body = json.loads(got.body)
    assert body == {
        "id": str(delivery.event_id),
        "type": "job",
        "team": "alpha",
        "created_at": body["created_at"],
        "data": {"id": 7, "kind": "convert", "status": "succeeded"},
    }
    # The secret is stored encrypted, not in the clear.
    webhook = Webhook.objects.get()
    assert created.secret not in webhook.secret_encrypted
    assert webhook_secret_decrypt(webhook.secret_encrypted) == created.secret


def test_a_receiver_that_fails_twice_gets_it_on_the_third_attempt(make_webhook, sent) -> None:
    with receiver(answers=[500, 503]) as hook:
        make_webhook(hook.url)
        delivery = publish_job()
        t0 = timezone.now()
        first = delivery_attempt(delivery_id=delivery.pk, now=t0)
        assert first is not None
        assert (first.state, first.attempts, first.last_status_code) == ("pending", 1, 500)
        assert first.last_error == "The receiver answered 500."
        assert first.next_attempt_at == t0 + BACKOFF[0]
        assert sent.calls[-1] == (str(delivery.pk), BACKOFF[0].total_seconds())
        # Not due yet: a duplicate message does nothing.
        assert delivery_attempt(delivery_id=delivery.pk, now=t0 + BACKOFF[0] - timedelta(seconds=1)) is None
        second = delivery_attempt(delivery_id=delivery.pk, now=t0 + BACKOFF[0])
        assert second is not None
        assert (second.state, second.attempts, second.last_status_code) == ("pending", 2, 503)
        assert second.next_attempt_at == t0 + BACKOFF[0] + BACKOFF[1]
        third = delivery_attempt(delivery_id=delivery.pk, now=t0 + BACKOFF[0] + BACKOFF[1])

    assert third is not None
    assert (third.state, third.attempts, third.last_status_code, third.next_attempt_at) == ("succeeded", 3, 200, None)
    assert [entry["status_code"] for entry in third.log] == [500, 503, 200]
    assert len(hook.requests) == 3
    # Each attempt is the same delivery: one id, one body, a fresh timestamp and signature.
    assert {r.headers["X-ModelDeck-Delivery"] for r in hook.requests} == {str(delivery.pk)}
    assert len({r.body for r in hook.requests}) == 1


def test_a_delivery_fails_after_the_last_attempt(make_webhook, sent) -> None:
    with receiver(answers=[500] * MAX_ATTEMPTS) as hook:
        make_webhook(hook.url)
        delivery = publish_job()
        now = timezone.now()
        for attempt in range(MAX_ATTEMPTS):
            done = delivery_attempt(delivery_id=delivery.pk, now=now)
            assert done is not None
            if attempt < len(BACKOFF):
                now += BACKOFF[attempt]
    assert done is not None
    assert (done.state, done.attempts, done.next_attempt_at) == ("failed", MAX_ATTEMPTS, None)
    assert delivery_attempt(delivery_id=delivery.pk, now=now + timedelta(days=1)) is None
    assert len(hook.requests) == MAX_ATTEMPTS


def test_an_attempt_gives_up_at_the_timeout(make_webhook, sent, monkeypatch) -> None:
    monkeypatch.setattr(transport, "TOTAL_TIMEOUT", 0.3)
    with receiver(delay=1.5) as hook:
        make_webhook(hook.url)
        delivery = publish_job()
        done = delivery_attempt(delivery_id=delivery.pk)
    assert done is not None
    assert (done.state, done.attempts, done.last_status_code) == ("pending", 1, None)
    assert done.last_error == "No answer within 0.3 s."
    assert done.response_ms is not None and done.response_ms < 1400


def test_a_redirect_is_not_followed(make_webhook, sent) -> None:
    with receiver(answers=[302]) as hook:
        make_webhook(hook.url)
        delivery = publish_job()
        done = delivery_attempt(delivery_id=delivery.pk)
    assert done is not None
    assert (done.state, done.last_status_code) == ("pending", 302)
    assert done.last_error.startswith("Redirected (302); webhooks do not follow redirects")
    assert len(hook.requests) == 1


def test_an_unreachable_receiver_is_a_failed_attempt(make_webhook, sent) -> None:
    with receiver() as hook:
        url = hook.url
    make_webhook(url)  # the server is gone now: nothing listens on the port
    done = delivery_attempt(delivery_id=publish_job().pk)
    assert done is not None
    assert (done.state, done.last_status_code) == ("pending", None)
    assert done.last_error.startswith("Could not connect")


def test_the_slack_format_sends_a_sentence(make_webhook, sent) -> None:
    release = {
        "endpoint": "iris",
        "release": 4,
        "primary": 3,
        "canary": None,
        "canary_percent": 0,
        "shadow": None,
        "reason": "",
        "by": "dana",
        "action": "promote",
    }
    with receiver() as hook:
        make_webhook(hook.url, format="slack")
        team_event_publish(team="alpha", kind="release", data=release)
        team_event_publish(
            team="alpha",
            kind="release",
            data={**release, "reason": "<!channel> & co", "canary": 5, "canary_percent": 10, "action": "canary"},
        )
        for delivery in WebhookDelivery.objects.order_by("created_at"):
            delivery_attempt(delivery_id=delivery.pk)
    assert [json.loads(r.body) for r in hook.requests] == [
        {"text": "[alpha] iris: release #4 promote v3 by dana"},
        {"text": "[alpha] iris: release #4 canary v3, canary v5 at 10% by dana: &lt;!channel&gt; &amp; co"},
    ]
    assert all("X-ModelDeck-Signature" in r.headers for r in hook.requests)


def test_slack_sentences_for_other_kinds() -> None:
    rollout = {
        "endpoint": "iris",
        "rollout": 2,
        "version": 5,
        "state": "running",
        "step": 1,
        "steps": 3,
        "percent": 10,
        "outcome": "",
        "action": "rollout.advance",
    }
    assert slack_text(team="alpha", kind="rollout", data=rollout) == (
        "[alpha] iris: rollout #2 of v5 rollout.advance, step 1/3 at 10% (running)"
    )
    job = {"id": 1, "kind": "convert", "status": "succeeded", "model": "churn", "version": 2, "result_version": 5}
    assert slack_text(team="alpha", kind="job", data=job) == "[alpha] churn v2: convert job succeeded, made v5"
    assert slack_text(team="alpha", kind="approval", data={"endpoint": "iris", "id": 3, "state": "approved"}) == (
        "[alpha] iris: approval id 3, state approved"
    )


def test_only_subscribed_enabled_webhooks_of_the_team_get_the_event(make_webhook, make_member, team_b, sent) -> None:
    make_webhook("https://a.example/jobs", events=["job"], name="jobs")
    make_webhook("https://a.example/releases", events=["release"], name="releases")
    off = make_webhook("https://a.example/off", events=["job"], name="off").webhook
    Webhook.objects.filter(pk=off.pk).update(enabled=False)
    publish_job()
    team_event_publish(team="bravo", kind="job", data={"id": 1})
    team_event_publish(team="alpha", kind="endpoint", data={"name": "iris"})  # no webhook may subscribe to it
    assert list(WebhookDelivery.objects.values_list("webhook__name", "kind")) == [("jobs", "job")]


def test_an_event_rolled_back_with_its_change_is_not_delivered(make_webhook, sent) -> None:
    make_webhook("https://a.example/hook")

    def change_that_fails() -> None:
        with transaction.atomic():
            team_event_publish(team="alpha", kind="job", data={"id": 1})
            assert WebhookDelivery.objects.count() == 1
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        change_that_fails()
    assert WebhookDelivery.objects.count() == 0
    assert sent.calls == []


def test_with_redis_away_the_delivery_is_kept_and_the_sweep_sends_it(
    make_webhook, settings, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    def broker_away(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("webhooks.tasks.webhook_delivery_task.apply_async", broker_away)
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}
    }
    with receiver() as hook:
        created = make_webhook(hook.url)
        # The live stream is away too: the publisher logs this and goes on.
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(RedisConnectionError):
            team_event_publish(team="alpha", kind="job", data={"id": 1})
        delivery = WebhookDelivery.objects.get()
        assert (delivery.state, delivery.attempts) == ("pending", 0)

        # Redis is back: the sweep finds the delivery whose task never reached the broker.
        monkeypatch.setattr(
            "webhooks.tasks.webhook_delivery_task.apply_async",
            lambda args, countdown=None: delivery_attempt(delivery_id=args[0]),
        )
        assert deliveries_resend_due() == []  # not overdue yet: its task may still be on its way
        assert deliveries_resend_due(now=timezone.now() + deliveries.SWEEP_GRACE) == [delivery.pk]
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("succeeded", 1)
    assert hook.requests[0].signature_valid(created.secret)


def test_a_worker_that_died_mid_attempt_is_swept_after_its_claim(make_webhook, sent) -> None:
    make_webhook("https://a.example/hook")
    delivery = publish_job()
    now = timezone.now()
    assert deliveries._claim(delivery.pk, now)  # a worker claimed it, then died
    assert deliveries_resend_due(now=now + deliveries.SWEEP_GRACE) == []
    assert deliveries_resend_due(now=now + deliveries.CLAIM + deliveries.SWEEP_GRACE) == [delivery.pk]


def test_a_disabled_webhook_fails_its_pending_deliveries_unsent(make_webhook, sent) -> None:
    with receiver() as hook:
        make_webhook(hook.url)
        delivery = publish_job()
        Webhook.objects.update(enabled=False)
        done = delivery_attempt(delivery_id=delivery.pk)
    assert done is not None
    assert (done.state, done.last_error) == ("failed", "The webhook is disabled.")
    assert hook.requests == []


def test_deliveries_older_than_30_days_are_pruned(make_webhook, sent) -> None:
    make_webhook("https://a.example/hook")
    old, fresh = publish_job(), None
    team_event_publish(team="alpha", kind="job", data={"id": 8})
    fresh = WebhookDelivery.objects.exclude(pk=old.pk).get()
    WebhookDelivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30, seconds=1))
    assert deliveries_prune() == 1
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_a_changed_secret_key_keeps_secrets_readable_through_its_fallback(make_webhook, settings) -> None:
    created = make_webhook("https://a.example/hook")
    stored = Webhook.objects.get().secret_encrypted
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-for-this-test"
    assert webhook_secret_decrypt(stored) == created.secret
    assert DeliveryState.PENDING == "pending"
