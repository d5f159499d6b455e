from __future__ import annotations

from django.contrib import admin

from webhooks.models import Webhook, WebhookDelivery


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "url", "format", "enabled", "created_at")
    list_filter = ("team", "format", "enabled")
    # The encrypted secret is never shown, even to the site admin.
    exclude = ("secret_encrypted",)
    readonly_fields = ("created_by",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "webhook", "kind", "state", "attempts", "last_status_code", "created_at")
    list_filter = ("state", "kind")
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields]
