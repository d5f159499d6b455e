"""Top-level URLs: browser pages, the REST API under /api/v1/, health, and each app's own."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("teams.auth_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its initialising script as a file: the Content-Security-Policy admits no inline script.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api/swagger_ui.html"),
        name="api-docs",
    ),
    path("api/v1/", include("teams.urls")),
    path("api/v1/", include("webhooks.urls")),
    path("api/v1/", include("registry.urls")),
    path("api/v1/", include("deployments.urls")),
    path("api/v1/", include("monitoring.api_urls")),
    path("", include("monitoring.urls")),
    path("", include("serving.urls")),
    path("", include("teams.page_urls")),
    path("", include("webhooks.page_urls")),
    path("", include("registry.page_urls")),
    path("", include("deployments.page_urls")),
]

handler404 = "common.error_views.not_found"
handler500 = "common.error_views.server_error"
