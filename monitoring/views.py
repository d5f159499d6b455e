"""Health check for load balancers, orchestrators and `make run`'s own start-up wait; Prometheus scrapes."""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from monitoring.prometheus import metrics_exposition, scrape_refusal
from monitoring.selectors import worker_status

logger = logging.getLogger(__name__)


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Answer 200 when this web process can reach its database and cache; report the workers alongside."""
    checks: dict[str, Any] = {}
    healthy = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001  (any database failure makes the process unhealthy)
        logger.warning("healthz: database check failed: %s", exc)
        checks["database"] = "error"
        healthy = False
    try:
        cache.set("healthz", "ok", 5)
        checks["cache"] = "ok" if cache.get("healthz") == "ok" else "error"
    except Exception as exc:  # noqa: BLE001
        logger.warning("healthz: cache check failed: %s", exc)
        checks["cache"] = "error"
    healthy = healthy and checks["cache"] == "ok"
    # Workers are reported, not required: a web process serves inference with no worker running.
    checks["worker"] = worker_status() if checks["database"] == "ok" else {"status": "unknown"}
    return JsonResponse({"status": "ok" if healthy else "error", "checks": checks}, status=200 if healthy else 503)


@require_GET
@never_cache
def metrics_response(request: HttpRequest) -> HttpResponse:
    """Serve every process's Prometheus metrics; with MODELDECK_METRICS_TOKEN set, only to that bearer token.

    Without a token, the production settings close it (403): it names every team's endpoints.
    """
    refusal = scrape_refusal(request.headers.get("Authorization", ""))
    if refusal is not None:
        response = HttpResponse(refusal.message, status=refusal.status, content_type="text/plain; charset=utf-8")
        for name, value in refusal.headers.items():
            response[name] = value
        return response
    return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
