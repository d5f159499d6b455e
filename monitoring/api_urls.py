"""REST routes of the monitoring app (under /api/v1/)."""

from __future__ import annotations

from django.urls import path

from monitoring import alert_apis
from monitoring.apis import EndpointDriftApi, EndpointMetricsApi

urlpatterns = [
    path("endpoints/<str:name>/metrics", EndpointMetricsApi.as_view(), name="api-endpoint-metrics"),
    path("endpoints/<str:name>/drift", EndpointDriftApi.as_view(), name="api-endpoint-drift"),
    path("endpoints/<str:name>/alert-rules", alert_apis.AlertRuleListApi.as_view(), name="api-endpoint-alert-rules"),
    path(
        "endpoints/<str:name>/alert-rules/<int:pk>",
        alert_apis.AlertRuleDetailApi.as_view(),
        name="api-endpoint-alert-rule",
    ),
    path("endpoints/<str:name>/alerts", alert_apis.AlertListApi.as_view(), name="api-endpoint-alerts"),
]
