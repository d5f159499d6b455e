from __future__ import annotations

from django.urls import path

from registry import views

urlpatterns = [
    path("teams/<str:team>/models/", views.model_list, name="model-list"),
    path("teams/<str:team>/models/<str:model>/", views.model_detail, name="model-detail"),
    path("teams/<str:team>/models/<str:model>/archive/", views.model_archive_page, name="model-archive"),
    path("teams/<str:team>/models/<str:model>/versions/<int:number>/", views.version_detail, name="version-detail"),
    path(
        "teams/<str:team>/models/<str:model>/versions/<int:number>/archive/",
        views.version_archive_page,
        name="version-archive",
    ),
    path(
        "teams/<str:team>/models/<str:model>/versions/<int:number>/convert/",
        views.version_convert,
        name="version-convert",
    ),
    path(
        "teams/<str:team>/models/<str:model>/versions/<int:number>/parity-accept/",
        views.version_parity_accept,
        name="version-parity-accept",
    ),
]
