from __future__ import annotations

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from common.signals import team_event_published
        from webhooks import tasks  # noqa: F401  (registers the delivery task that deliveries send by name)
        from webhooks.deliveries import deliveries_record_for_event

        # Every team event (common.events) becomes a delivery for each webhook of the team that subscribes to it.
        team_event_published.connect(deliveries_record_for_event, dispatch_uid="webhooks.deliveries_record")
