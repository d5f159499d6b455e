"""Recording inference on the hot path: a few dict and list increments per request, no lock, no I/O.

Every call comes from the web process's event loop thread (the data plane runs there; shadow copies finishing on
their own threads hop onto the loop first), so no lock is needed and none is taken. Once a second the flusher
swaps the current window out and publishes it (live stream, Prometheus, minute rollups).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# Latency bucket upper bounds in seconds (Prometheus-style 1-2.5-5 steps; the last bucket is +Inf). They start at
# 10 µs so that a model answering in hundredths of a millisecond still spreads over several buckets.
LATENCY_BOUNDS: tuple[float, ...] = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# The same bounds in ms, as the live messages and the history API send them with their buckets.
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(round(bound * 1000, 4) for bound in LATENCY_BOUNDS)
# Rows per request.
BATCH_BOUNDS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

SeriesKey = tuple[str, int, str]  # (endpoint, version number, role: primary | canary | shadow)
# A series as recorded: also by the transport that carried the requests (http | grpc), a label in Prometheus.
ProtocolSeriesKey = tuple[str, int, str, str]


@dataclass(slots=True)
class Series:
    """One endpoint version's requests within one window."""

    count: int = 0
    errors: int = 0  # answered 5xx: the server's fault
    client_errors: int = 0  # answered 4xx: the caller's request was refused
    # Shadow series only: answers that disagreed with the primary's for the same request.
    disagreements: int = 0
    latency_sum: float = 0.0
    rows: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    batch_buckets: list[int] = field(default_factory=lambda: [0] * (len(BATCH_BOUNDS) + 1))

    def merge(self, other: Series) -> None:
        self.count += other.count
        self.errors += other.errors
        self.client_errors += other.client_errors
        self.disagreements += other.disagreements
        self.latency_sum += other.latency_sum
        self.rows += other.rows
        for code, n in other.codes.items():
            self.codes[code] = self.codes.get(code, 0) + n
        for i, n in enumerate(other.latency_buckets):
            self.latency_buckets[i] += n
        for i, n in enumerate(other.batch_buckets):
            self.batch_buckets[i] += n

    def quantile(self, q: float) -> float | None:
        """The latency below which a share `q` of requests fell, in seconds (None if empty)."""
        return bucket_quantile(self.latency_buckets, q)


def bucket_quantile(buckets: list[int], q: float) -> float | None:
    """Estimate a latency quantile from bucket counts over LATENCY_BOUNDS, in seconds, as Prometheus does.

    Within the bucket the quantile falls in, requests are taken as spread evenly between its bounds (the first
    bucket starts at 0), so a p95 moves with the traffic instead of jumping from one bucket edge to the next. In
    the +Inf bucket there is no upper bound to interpolate to: infinity (None if there are no requests)."""
    count = sum(buckets)
    if not count:
        return None
    target = q * count
    seen = 0
    for i, n in enumerate(buckets):
        if n and seen + n >= target:
            if i >= len(LATENCY_BOUNDS):
                return float("inf")
            lower = LATENCY_BOUNDS[i - 1] if i else 0.0
            return lower + (LATENCY_BOUNDS[i] - lower) * (target - seen) / n
        seen += n
    return float("inf")


class Recorder:
    """The current window of per-version series; `record` on the loop thread, `swap` by the flusher (same thread)."""

    def __init__(self) -> None:
        self._window: dict[ProtocolSeriesKey, Series] = {}
        self.enabled = True

    def record(
        self,
        endpoint: str,
        version: int,
        role: str,
        status: int,
        seconds: float,
        rows: int,
        disagreed: bool = False,
        protocol: str = "http",
    ) -> None:
        """Count one answered inference request (for a shadow copy, also whether it disagreed with the primary)."""
        if not self.enabled:
            return
        key = (endpoint, version, role, protocol)
        series = self._window.get(key)
        if series is None:
            series = self._window[key] = Series()
        series.count += 1
        if status >= 500:
            series.errors += 1
        elif status >= 400:
            series.client_errors += 1
        if disagreed:
            series.disagreements += 1
        series.latency_sum += seconds
        series.rows += rows
        codes = series.codes
        codes[status] = codes.get(status, 0) + 1
        series.latency_buckets[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        series.batch_buckets[bisect.bisect_left(BATCH_BOUNDS, rows)] += 1

    def swap_by_protocol(self) -> dict[ProtocolSeriesKey, Series]:
        """Hand over the current window, series split by protocol, and start a new one."""
        window, self._window = self._window, {}
        return window

    def swap(self) -> dict[SeriesKey, Series]:
        """Hand over the current window, each version's protocols together, and start a new one."""
        return series_by_version(self.swap_by_protocol())


def series_by_version(window: dict[ProtocolSeriesKey, Series]) -> dict[SeriesKey, Series]:
    """A window's series with their protocols merged (what the live stream, the minutes and alert rules count).

    A version served over one protocol keeps its Series object; one served over several gets a new one, so the
    window split by protocol stays as it was (the flusher hands it to Prometheus as well)."""
    merged: dict[SeriesKey, Series] = {}
    copied: set[SeriesKey] = set()
    for (endpoint, version, role, _protocol), series in window.items():
        key = (endpoint, version, role)
        kept = merged.get(key)
        if kept is None:
            merged[key] = series
            continue
        if key not in copied:
            kept = merged[key] = _copy(kept)
            copied.add(key)
        kept.merge(series)
    return merged


def _copy(series: Series) -> Series:
    fresh = Series()
    fresh.merge(series)
    return fresh


recorder = Recorder()
