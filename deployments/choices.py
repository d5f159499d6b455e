from __future__ import annotations

from django.db import models


class ReleaseAction(models.TextChoices):
    CREATE = "create", "Created"
    PROMOTE = "promote", "Promoted"
    CANARY = "canary", "Canary"
    SHADOW = "shadow", "Shadow"
    ROLLBACK = "rollback", "Rolled back"
