from __future__ import annotations

from django.urls import path

from deployments import views

urlpatterns = [
    path("teams/<str:team>/endpoints/", views.endpoint_list_page, name="endpoint-list"),
    path("endpoints/<str:name>/", views.endpoint_page, name="endpoint-page"),
    path(
        "teams/<str:team>/models/<str:model>/versions/<int:number>/deploy/",
        views.version_deploy,
        name="version-deploy",
    ),
]
