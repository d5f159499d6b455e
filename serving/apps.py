from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class ServingConfig(AppConfig):
    name = "serving"
    verbose_name = "Serving (data plane)"

    def ready(self) -> None:
        from deployments.signals import releases_changed

        releases_changed.connect(_wake_router, dispatch_uid="serving.wake_router")


def _wake_router(**kwargs: Any) -> None:
    """A change made in this process (the embedded default's only web process) is followed at once, not next poll."""
    from serving import router

    if router._router is not None:
        router._router.wake()
