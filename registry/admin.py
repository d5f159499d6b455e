from __future__ import annotations

from django.contrib import admin

from registry.models import ModelVersion, RegisteredModel


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "created_by", "created_at"]
    list_filter = ["team"]
    search_fields = ["name", "description"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["model", "number", "format", "status", "size", "created_by", "created_at"]
    list_filter = ["format", "status"]
    search_fields = ["model__name", "sha256", "filename"]
    # Versions are immutable: the admin shows them, it does not edit their content.
    readonly_fields = [f.name for f in ModelVersion._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False
