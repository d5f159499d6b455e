from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import WorkerHeartbeat
from monitoring.tasks import worker_heartbeat

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_cache_and_unknown_worker(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {
            "database": "ok",
            "cache": "ok",
            "worker": {"status": "unknown", "detail": "No worker has reported yet."},
        },
    }
    assert "no-cache" in response["Cache-Control"]


def test_healthz_reports_a_fresh_and_a_stale_worker(client, settings) -> None:
    worker_heartbeat.apply()  # runs the task body as a worker would
    worker = client.get("/healthz").json()["checks"]["worker"]
    assert worker["status"] == "ok"
    assert worker["age_seconds"] < 5
    WorkerHeartbeat.objects.update(
        last_seen=timezone.now() - timedelta(seconds=settings.MODELDECK_WORKER_STALE_SECONDS + 1)
    )
    assert client.get("/healthz").json()["checks"]["worker"]["status"] == "stale"


def test_healthz_is_503_when_the_cache_is_down(client, settings) -> None:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["cache"] == "error"
