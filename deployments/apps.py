from __future__ import annotations

from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Deployments (control plane)"

    def ready(self) -> None:
        from deployments import signals  # noqa: F401  (answers the registry's versions_in_use)
