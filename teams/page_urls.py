from __future__ import annotations

from django.urls import path

from teams import views

urlpatterns = [
    path("", views.landing, name="home"),
    path("teams/", views.team_list_page, name="team-list"),
    path("teams/<str:team>/tokens/", views.token_list, name="team-tokens"),
    path("teams/<str:team>/tokens/<int:token_id>/revoke/", views.token_revoke, name="team-token-revoke"),
    path("teams/<str:team>/audit/", views.audit_log, name="team-audit"),
    path("teams/<str:team>/settings/", views.team_settings, name="team-settings"),
]
