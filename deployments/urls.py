from __future__ import annotations

from django.urls import path

from deployments import apis

urlpatterns = [
    path("change-requests", apis.ChangeRequestListApi.as_view(), name="api-change-requests"),
    path("change-requests/<int:request_id>", apis.ChangeRequestDetailApi.as_view(), name="api-change-request"),
    path(
        "change-requests/<int:request_id>/approve",
        apis.ChangeRequestApproveApi.as_view(),
        name="api-change-request-approve",
    ),
    path(
        "change-requests/<int:request_id>/reject",
        apis.ChangeRequestRejectApi.as_view(),
        name="api-change-request-reject",
    ),
    path("endpoints", apis.EndpointListApi.as_view(), name="api-endpoints"),
    path("endpoints/<str:name>", apis.EndpointDetailApi.as_view(), name="api-endpoint"),
    path("endpoints/<str:name>/releases", apis.ReleaseListApi.as_view(), name="api-endpoint-releases"),
    path("endpoints/<str:name>/promote", apis.EndpointPromoteApi.as_view(), name="api-endpoint-promote"),
    path("endpoints/<str:name>/rollback", apis.EndpointRollbackApi.as_view(), name="api-endpoint-rollback"),
    path("endpoints/<str:name>/rollouts", apis.RolloutListApi.as_view(), name="api-endpoint-rollouts"),
    path("endpoints/<str:name>/rollouts/<int:rollout_id>", apis.RolloutDetailApi.as_view(), name="api-rollout"),
    path(
        "endpoints/<str:name>/rollouts/<int:rollout_id>/pause", apis.RolloutPauseApi.as_view(), name="api-rollout-pause"
    ),
    path(
        "endpoints/<str:name>/rollouts/<int:rollout_id>/resume",
        apis.RolloutResumeApi.as_view(),
        name="api-rollout-resume",
    ),
    path(
        "endpoints/<str:name>/rollouts/<int:rollout_id>/advance",
        apis.RolloutAdvanceApi.as_view(),
        name="api-rollout-advance",
    ),
    path(
        "endpoints/<str:name>/rollouts/<int:rollout_id>/abort", apis.RolloutAbortApi.as_view(), name="api-rollout-abort"
    ),
]
