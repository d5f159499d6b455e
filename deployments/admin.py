from __future__ import annotations

from django.contrib import admin

from deployments.models import Endpoint, Release


class ReleaseInline(admin.TabularInline):
    model = Release
    extra = 0
    can_delete = False
    readonly_fields = [
        "number",
        "action",
        "primary",
        "canary",
        "canary_percent",
        "shadow",
        "actor",
        "rule_name",
        "reason",
        "created_at",
    ]

    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "model", "protected", "public", "created_at"]
    list_filter = ["team", "protected", "public"]
    search_fields = ["name"]
    inlines = [ReleaseInline]


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = [
        "endpoint",
        "number",
        "action",
        "primary",
        "canary",
        "canary_percent",
        "shadow",
        "actor",
        "created_at",
    ]
    list_filter = ["action"]
    # Releases are history: they are appended by the services, never edited.
    readonly_fields = [f.name for f in Release._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False
