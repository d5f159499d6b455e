"""Shadow traffic: a copy of each request runs on the shadow version off the request path; disagreement is counted."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from monitoring.recorder import recorder
from serving.runtime_cache import LoadedVersion

logger = logging.getLogger(__name__)

# Shadow work never queues without bound behind a slow shadow model: beyond this many pending copies, drop (logged).
MAX_PENDING = 64
DROP_WARNING_SECONDS = 60.0
# Regression-style outputs agree within this; classifier-style outputs (rank >= 2, several columns) must pick the
# same class per row.
ATOL = 1e-3
RTOL = 1e-3


def outputs_disagree(primary: dict[str, np.ndarray], shadow: dict[str, np.ndarray]) -> bool:
    """Whether the shadow's answer differs from the primary's for this request."""
    for name, expected in primary.items():
        got = shadow.get(name)
        if got is None or got.shape != expected.shape:
            return True
        if expected.dtype.kind not in "fiub":
            if not np.array_equal(expected, got):
                return True
            continue
        a, b = expected.astype(np.float64), got.astype(np.float64)
        if a.ndim >= 2 and a.shape[-1] > 1:
            if (a.argmax(axis=-1) != b.argmax(axis=-1)).any():
                return True
        elif not np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True):
            return True
    return False


class ShadowRecorder:
    """Run shadow copies on a small pool of their own; each is recorded as a request to the shadow version, with
    whether it disagreed (monitoring/recorder.py), so it reaches the charts, Prometheus and the alert rules."""

    def __init__(self, workers: int = 2) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="serving-shadow")
        self._lock = threading.Lock()
        self._pending = 0
        self._dropped: dict[str, int] = {}  # per endpoint, since its last warning
        self._warned_at: dict[str, float] = {}

    def submit(
        self,
        endpoint: str,
        version: LoadedVersion,
        inputs: dict[str, np.ndarray],
        outputs: dict[str, np.ndarray],
        protocol: str = "http",
    ) -> None:
        with self._lock:
            if self._pending >= MAX_PENDING:
                self._drop(endpoint)
                return
            self._pending += 1
        loop = asyncio.get_running_loop()
        self._executor.submit(self._compare, endpoint, version, inputs, outputs, loop, protocol)

    def _drop(self, endpoint: str) -> None:
        # Under the lock. Dropped copies are said in the log (at most every DROP_WARNING_SECONDS per endpoint), not
        # recorded as requests: the shadow's disagreement rate stays a rate over copies it actually answered.
        self._dropped[endpoint] = self._dropped.get(endpoint, 0) + 1
        now = time.monotonic()
        if now - self._warned_at.get(endpoint, -DROP_WARNING_SECONDS) >= DROP_WARNING_SECONDS:
            logger.warning(
                "shadow copies of %s are dropped: %d copies are already waiting for the shadow version "
                "(%d dropped since the last warning); its disagreement counts cover the copies it answered",
                endpoint,
                MAX_PENDING,
                self._dropped[endpoint],
            )
            self._warned_at[endpoint] = now
            self._dropped[endpoint] = 0

    def _compare(
        self,
        endpoint: str,
        version: LoadedVersion,
        inputs: dict[str, np.ndarray],
        outputs: dict[str, np.ndarray],
        loop: asyncio.AbstractEventLoop,
        protocol: str,
    ) -> None:
        started = time.perf_counter()
        status = 500
        disagree = False
        try:
            shadow_outputs = version.runtime.run(inputs)
            status = 200
            disagree = outputs_disagree(outputs, shadow_outputs)
        except Exception:  # a failing shadow is recorded, never surfaced to the caller
            logger.exception("shadow v%s of %s failed", version.key.number, endpoint)
        finally:
            with self._lock:
                self._pending -= 1
            # The recorder belongs to the event loop's thread: hand the numbers over rather than touch it here.
            rows = int(next(iter(inputs.values())).shape[0]) if inputs else 0
            number, elapsed = version.key.number, time.perf_counter() - started
            record = functools.partial(recorder.record, protocol=protocol)
            with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                loop.call_soon_threadsafe(record, endpoint, number, "shadow", status, elapsed, rows, disagree)

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until no shadow copy is pending (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.005)
