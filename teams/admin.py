from __future__ import annotations

from django.contrib import admin

from teams.forms import ThrottledAdminAuthenticationForm
from teams.models import ApiToken, AuditEvent, Membership, Team

# The admin's own login page counts and refuses failures like the site's (teams.auth_throttle).
admin.site.login_form = ThrottledAdminAuthenticationForm


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["team", "user", "role", "created_at"]
    list_filter = ["role", "team"]
    search_fields = ["user__username", "team__slug"]
    autocomplete_fields = ["user", "team"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "team", "user", "role", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["role", "team"]
    search_fields = ["prefix", "name", "user__username"]
    # The digest is never shown and tokens are issued through the site, the API or `issuetoken`, never typed here.
    exclude = ["digest"]
    readonly_fields = ["team", "user", "prefix", "role", "last_used_at", "created_at"]

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "team", "actor", "action", "target_type", "target_id", "token_prefix", "data"]
    list_filter = ["action", "team"]
    search_fields = ["action", "actor__username", "target_id"]

    # The audit trail is append-only.
    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False
