from __future__ import annotations

from django.urls import path

from registry import apis

urlpatterns = [
    path("models", apis.ModelListApi.as_view(), name="api-models"),
    path("models/<str:team>/<str:model>", apis.ModelDetailApi.as_view(), name="api-model"),
    path("models/<str:team>/<str:model>/archive", apis.ModelArchiveApi.as_view(), name="api-model-archive"),
    path("models/<str:team>/<str:model>/unarchive", apis.ModelUnarchiveApi.as_view(), name="api-model-unarchive"),
    path("models/<str:team>/<str:model>/versions", apis.VersionListApi.as_view(), name="api-versions"),
    path("models/<str:team>/<str:model>/versions/<int:number>", apis.VersionDetailApi.as_view(), name="api-version"),
    path(
        "models/<str:team>/<str:model>/versions/<int:number>/artifact",
        apis.VersionArtifactApi.as_view(),
        name="api-version-artifact",
    ),
    path(
        "models/<str:team>/<str:model>/versions/<int:number>/conversions",
        apis.VersionConversionApi.as_view(),
        name="api-version-conversions",
    ),
    path(
        "models/<str:team>/<str:model>/versions/<int:number>/benchmarks",
        apis.VersionBenchmarkApi.as_view(),
        name="api-version-benchmarks",
    ),
    path(
        "models/<str:team>/<str:model>/versions/<int:number>/parity-override",
        apis.VersionParityOverrideApi.as_view(),
        name="api-version-parity-override",
    ),
    path(
        "models/<str:team>/<str:model>/versions/<int:number>/archive",
        apis.VersionArchiveApi.as_view(),
        name="api-version-archive",
    ),
    path(
        "models/<str:team>/<str:model>/versions/<int:number>/unarchive",
        apis.VersionUnarchiveApi.as_view(),
        name="api-version-unarchive",
    ),
    path("jobs", apis.JobListApi.as_view(), name="api-jobs"),
    path("jobs/<int:job_id>", apis.JobDetailApi.as_view(), name="api-job"),
    path("jobs/<int:job_id>/cancel", apis.JobCancelApi.as_view(), name="api-job-cancel"),
]
