from __future__ import annotations

from django.apps import AppConfig


class TeamsConfig(AppConfig):
    name = "teams"
    verbose_name = "Teams and access"

    def ready(self) -> None:
        from teams import openapi  # noqa: F401  (registers the bearer token scheme with drf-spectacular)
