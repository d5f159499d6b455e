"""Abstract models every app builds on."""

from __future__ import annotations

from django.db import models


class BaseModel(models.Model):
    """Give a model creation and update timestamps."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
