from __future__ import annotations

from django.contrib import admin

from monitoring.models import Alert, AlertRule, WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["worker", "last_seen"]
    readonly_fields = ["worker", "last_seen"]


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "endpoint", "metric", "threshold", "window_seconds", "min_requests", "action", "enabled"]
    list_filter = ["metric", "action", "enabled"]
    search_fields = ["name", "endpoint__name"]
    readonly_fields = ["created_by", "created_at", "updated_at"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["fired_at", "endpoint", "rule_name", "release", "version", "role", "value", "action_taken"]
    list_filter = ["action_taken", "metric"]
    search_fields = ["rule_name", "endpoint__name"]

    # Alerts are history: recorded by the evaluator, never edited.
    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
