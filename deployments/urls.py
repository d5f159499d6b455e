from __future__ import annotations

from django.urls import path

from deployments import apis

urlpatterns = [
    path("endpoints", apis.EndpointListApi.as_view(), name="api-endpoints"),
    path("endpoints/<str:name>", apis.EndpointDetailApi.as_view(), name="api-endpoint"),
    path("endpoints/<str:name>/releases", apis.ReleaseListApi.as_view(), name="api-endpoint-releases"),
    path("endpoints/<str:name>/promote", apis.EndpointPromoteApi.as_view(), name="api-endpoint-promote"),
    path("endpoints/<str:name>/rollback", apis.EndpointRollbackApi.as_view(), name="api-endpoint-rollback"),
]
