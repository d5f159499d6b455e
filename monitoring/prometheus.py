"""Prometheus metrics, shared by every web, worker and beat process through prometheus_client's multiprocess mode.

prometheus_client chooses where values live when it is first imported: with `PROMETHEUS_MULTIPROC_DIR` set, each
process writes its own memory-mapped files there and a scrape sums them all. The settings set that variable
(`MODELDECK_PROMETHEUS_DIR`), and every module importing this one needs the settings loaded first (models,
storage), so the variable is in place before the import below. `runstack` empties the folder before it starts
the processes, as prometheus_client requires.

Inference is not counted here per request: the recorder aggregates on the hot path, and once a second the
flusher hands its window to `inference_add`.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from monitoring.recorder import BATCH_BOUNDS, LATENCY_BOUNDS, ProtocolSeriesKey, Series

logger = logging.getLogger(__name__)

INFERENCE_REQUESTS = Counter(
    "modeldeck_inference_requests_total",
    "Inference requests answered, by endpoint, version, status code (HTTP's; a gRPC refusal's kind by the same "
    "number) and protocol (http or grpc).",
    ["endpoint", "version", "code", "protocol"],
)
INFERENCE_DURATION = Histogram(
    "modeldeck_inference_duration_seconds",
    "Inference request latency in seconds, by endpoint, version and protocol.",
    ["endpoint", "version", "protocol"],
    buckets=LATENCY_BOUNDS,
)
BATCH_SIZE = Histogram(
    "modeldeck_batch_size",
    "Rows per inference request, by endpoint, version and protocol.",
    ["endpoint", "version", "protocol"],
    buckets=BATCH_BOUNDS,
)
JOBS = Counter(
    "modeldeck_jobs_total",
    "Jobs a worker ran to a final status, by kind and status.",
    ["kind", "status"],
)
MODEL_LOAD_SECONDS = Histogram(
    "modeldeck_model_load_seconds",
    "Seconds to load a model version into a serving runtime, by format.",
    ["format"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)


def _histogram_add(child: Any, buckets: list[int], total: float) -> None:
    """Add a pre-bucketed window to a histogram child in one go.

    The recorder has already sorted a second's requests into the same buckets, so replaying them one `observe`
    at a time would cost a call per request. A child keeps each bucket's own (non-cumulative) count in
    `_buckets[i]` and the sum in `_sum` (prometheus_client 0.26; the exposition accumulates the buckets), which
    is exactly what `observe` increments; tests pin that the output equals N `observe` calls.
    """
    child._sum.inc(total)
    for i, n in enumerate(buckets):
        if n:
            child._buckets[i].inc(n)


def inference_add(window: dict[ProtocolSeriesKey, Series]) -> None:
    """Add one flushed window of inference series to the request counter and the latency and batch histograms."""
    # Role is not a label: the version number already says which one it is.
    merged: dict[tuple[str, str, str], Series] = {}
    for (endpoint, number, _role, protocol), series in window.items():
        key = (endpoint, str(number), protocol)
        if key not in merged:
            merged[key] = Series()
        merged[key].merge(series)
    for (endpoint, version, protocol), series in merged.items():
        if not series.count:
            continue
        for code, n in series.codes.items():
            INFERENCE_REQUESTS.labels(endpoint, version, str(code), protocol).inc(n)
        duration = INFERENCE_DURATION.labels(endpoint, version, protocol)
        _histogram_add(duration, series.latency_buckets, series.latency_sum)
        _histogram_add(BATCH_SIZE.labels(endpoint, version, protocol), series.batch_buckets, series.rows)


def jobs_count(*, kind: str, status: str) -> None:
    """Count a job that reached a final status; a metrics failure is logged, never raised into the job."""
    try:
        JOBS.labels(kind, status).inc()
    except Exception:
        logger.warning("Could not count a %s job that %s", kind, status, exc_info=True)


def model_load_observe(*, format: str, seconds: float) -> None:
    """Record how long loading a model version took; a metrics failure is logged, never raised into the load."""
    try:
        MODEL_LOAD_SECONDS.labels(format).observe(seconds)
    except Exception:
        logger.warning("Could not record a %s model load", format, exc_info=True)


def metrics_exposition() -> bytes:
    """The text exposition of every process's metrics, summed from the multiprocess folder."""
    # A fresh registry per scrape holding only the multiprocess collector: this process's own default registry
    # would add its values a second time.
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


@dataclass(frozen=True)
class ScrapeRefusal:
    """Why a scrape gets no metrics: its status, a plain-text message and the headers to send."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def scrape_refusal(authorization: str) -> ScrapeRefusal | None:
    """The /metrics rule, for every port that serves metrics: with MODELDECK_METRICS_TOKEN set, only that bearer
    token; without one, open locally and closed (403) where the settings require a token (production): the metrics
    name every team's endpoints. None when the scrape may go on."""
    token: str = settings.MODELDECK_METRICS_TOKEN
    if not token and settings.MODELDECK_METRICS_REQUIRE_TOKEN:
        closed = "/metrics is closed until MODELDECK_METRICS_TOKEN is set; then scrape with Authorization: Bearer <it>."
        return ScrapeRefusal(403, closed + "\n")
    # Constant time: the comparison must not tell a guesser how much of the token was right.
    if token and not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
        return ScrapeRefusal(
            401,
            "A valid scrape token is required: Authorization: Bearer <MODELDECK_METRICS_TOKEN>.\n",
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return None
