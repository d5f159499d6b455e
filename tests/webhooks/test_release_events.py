"""A real release (deployments.services.release_promote) becomes a webhook delivery through common.events, with the
Redis channel layer and with the outbox of the embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.models import OutboxEvent
from deployments.services import endpoint_create, release_promote
from registry.services.versions import registered_model_create
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version
from tests.webhooks.receiver import receiver
from webhooks.deliveries import delivery_attempt
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifact_dir")]


@pytest.mark.parametrize("layer", ["redis", "outbox"])
def test_a_promote_is_delivered(
    layer, admin: Actor, team_a, make_webhook, sent, settings, tmp_path: Path, django_capture_on_commit_callbacks
) -> None:
    if layer == "outbox":
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    model = registered_model_create(actor=admin, team=team_a, name="iris")
    v1, v2 = (add_version(model, admin, tmp_path, seed) for seed in (1, 2))
    endpoint = endpoint_create(actor=admin, model=model, name="iris", version=v1)
    with receiver() as hook:
        created = make_webhook(hook.url, events=["release"], format="modeldeck")
        with django_capture_on_commit_callbacks(execute=True):
            release = release_promote(actor=admin, endpoint=endpoint, version=v2, reason="better")
        delivery = WebhookDelivery.objects.get()
        assert sent.ids == [str(delivery.pk)]
        delivery_attempt(delivery_id=delivery.pk)

    assert OutboxEvent.objects.filter(kind="release").exists() is (layer == "outbox")
    (got,) = hook.requests
    assert got.signature_valid(created.secret)
    body = json.loads(got.body)
    assert (body["type"], body["team"], body["id"]) == ("release", "alpha", str(delivery.event_id))
    assert body["data"] == {
        "endpoint": "iris",
        "release": release.number,
        "primary": v2.number,
        "canary": None,
        "canary_percent": 0,
        "shadow": None,
        "reason": "better",
        "by": "ada",
        "action": "promote",
    }
