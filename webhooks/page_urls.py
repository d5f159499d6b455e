from __future__ import annotations

from django.urls import path

from webhooks import views

urlpatterns = [
    path("teams/<str:team>/settings/webhooks/", views.team_webhooks, name="team-webhooks"),
]
