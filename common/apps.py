from __future__ import annotations

from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


class CommonConfig(AppConfig):
    name = "common"
    verbose_name = "Common"

    def ready(self) -> None:
        # The embedded broker is a folder: every process that sends or receives tasks needs it to exist.
        for option in ("data_folder_in", "data_folder_out", "control_folder"):
            folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get(option)
            if folder:
                Path(folder).mkdir(parents=True, exist_ok=True)
