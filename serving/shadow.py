"""Shadow traffic: a copy of each request runs on the shadow version off the request path; disagreement is counted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from monitoring.recorder import recorder
from serving.runtime_cache import LoadedVersion

logger = logging.getLogger(__name__)

# Shadow work never queues without bound behind a slow shadow model: beyond this many pending copies, drop (counted).
MAX_PENDING = 64
# Regression-style outputs agree within this; classifier-style outputs (rank >= 2, several columns) must pick the
# same class per row.
ATOL = 1e-3
RTOL = 1e-3


@dataclass
class ShadowStats:
    requests: int = 0
    disagreements: int = 0
    errors: int = 0
    dropped: int = 0
    max_abs_diff: float = 0.0

    @property
    def disagreement_rate(self) -> float:
        return self.disagreements / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "disagreement_rate": self.disagreement_rate}


def outputs_disagree(primary: dict[str, np.ndarray], shadow: dict[str, np.ndarray]) -> tuple[bool, float]:
    """Whether the shadow's answer differs from the primary's for this request, and the largest absolute difference."""
    disagree = False
    worst = 0.0
    for name, expected in primary.items():
        got = shadow.get(name)
        if got is None or got.shape != expected.shape:
            return True, float("inf")
        if expected.dtype.kind not in "fiub":
            disagree = disagree or not np.array_equal(expected, got)
            continue
        a, b = expected.astype(np.float64), got.astype(np.float64)
        diff = np.abs(a - b)
        if diff.size and not np.isnan(diff).all():
            worst = max(worst, float(np.nanmax(diff)))
        if a.ndim >= 2 and a.shape[-1] > 1:
            disagree = disagree or bool((a.argmax(axis=-1) != b.argmax(axis=-1)).any())
        else:
            disagree = disagree or not np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)
    return disagree, worst


class ShadowRecorder:
    """Run shadow copies on a small pool of their own and keep per (endpoint, version) counts."""

    def __init__(self, workers: int = 2) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="serving-shadow")
        self._lock = threading.Lock()
        self._pending = 0
        self.stats: dict[tuple[str, int], ShadowStats] = {}

    def _stats(self, endpoint: str, number: int) -> ShadowStats:
        return self.stats.setdefault((endpoint, number), ShadowStats())

    def submit(
        self, endpoint: str, version: LoadedVersion, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]
    ) -> None:
        with self._lock:
            if self._pending >= MAX_PENDING:
                self._stats(endpoint, version.key.number).dropped += 1
                return
            self._pending += 1
        loop = asyncio.get_running_loop()
        self._executor.submit(self._compare, endpoint, version, inputs, outputs, loop)

    def _compare(
        self,
        endpoint: str,
        version: LoadedVersion,
        inputs: dict[str, np.ndarray],
        outputs: dict[str, np.ndarray],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        started = time.perf_counter()
        status = 500
        disagree = False
        try:
            shadow_outputs = version.runtime.run(inputs)
            status = 200
            disagree, diff = outputs_disagree(outputs, shadow_outputs)
            with self._lock:
                stats = self._stats(endpoint, version.key.number)
                stats.requests += 1
                stats.disagreements += int(disagree)
                stats.max_abs_diff = max(stats.max_abs_diff, diff)
        except Exception:  # a failing shadow is recorded, never surfaced to the caller
            logger.exception("shadow v%s of %s failed", version.key.number, endpoint)
            with self._lock:
                self._stats(endpoint, version.key.number).errors += 1
        finally:
            with self._lock:
                self._pending -= 1
            # The recorder belongs to the event loop's thread: hand the numbers over rather than touch it here.
            rows = int(next(iter(inputs.values())).shape[0]) if inputs else 0
            number, elapsed = version.key.number, time.perf_counter() - started
            with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                loop.call_soon_threadsafe(recorder.record, endpoint, number, "shadow", status, elapsed, rows, disagree)

    def snapshot(self, endpoint: str) -> dict[int, dict[str, Any]]:
        """The shadow counts of one endpoint, by version number."""
        with self._lock:
            return {number: s.to_dict() for (name, number), s in self.stats.items() if name == endpoint}

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until no shadow copy is pending (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.005)
