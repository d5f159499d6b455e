from __future__ import annotations

from django.urls import path

from registry import apis

urlpatterns = [
    path("models", apis.ModelListApi.as_view(), name="api-models"),
    path("models/<str:team>/<str:model>", apis.ModelDetailApi.as_view(), name="api-model"),
    path("models/<str:team>/<str:model>/versions", apis.VersionListApi.as_view(), name="api-versions"),
    path("models/<str:team>/<str:model>/versions/<int:number>", apis.VersionDetailApi.as_view(), name="api-version"),
    path(
        "models/<str:team>/<str:model>/versions/<int:number>/artifact",
        apis.VersionArtifactApi.as_view(),
        name="api-version-artifact",
    ),
]
