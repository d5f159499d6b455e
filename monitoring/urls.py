from __future__ import annotations

from django.urls import path

from monitoring import pages, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics_response, name="metrics"),
    path("teams/<str:team>/alerts/", pages.team_alerts_card, name="team-alerts"),
    path("endpoints/<str:name>/alerts/", pages.alerts_card, name="endpoint-alerts"),
    path("endpoints/<str:name>/alerts/rules/", pages.alert_rule_add, name="endpoint-alert-rule-add"),
    path(
        "endpoints/<str:name>/alerts/rules/<int:pk>/<str:change>/",
        pages.alert_rule_change,
        name="endpoint-alert-rule-change",
    ),
]
