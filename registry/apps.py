from __future__ import annotations

from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        # signals connects the worker start-up cleanup; tasks registers, in every process, the tasks that services send
        # by name (common/registered_tasks.py).
        from registry import signals, tasks  # noqa: F401
