from __future__ import annotations

from django.urls import path

from deployments import approval_pages, views

urlpatterns = [
    # The team dashboard: it shows the team's endpoints, so it is served by the app that owns them.
    path("teams/<str:team>/", views.team_detail, name="team-detail"),
    path("teams/<str:team>/endpoints/", views.endpoint_list_page, name="endpoint-list"),
    path("teams/<str:team>/approvals/", approval_pages.approvals_page, name="approvals"),
    path("teams/<str:team>/approvals/<int:request_id>/", approval_pages.approval_page, name="approval-page"),
    path("endpoints/<str:name>/", views.endpoint_page, name="endpoint-page"),
    path("endpoints/<str:name>/rollout/", views.endpoint_rollout, name="endpoint-rollout"),
    path("endpoints/<str:name>/settings/", views.endpoint_settings, name="endpoint-settings"),
    path("endpoints/<str:name>/delete/", views.endpoint_delete_page, name="endpoint-delete"),
    path(
        "teams/<str:team>/models/<str:model>/versions/<int:number>/deploy/",
        views.version_deploy,
        name="version-deploy",
    ),
]
