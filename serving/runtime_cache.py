"""The warm runtime cache: one loaded, warmed runtime per model version, kept within a memory budget (LRU)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from monitoring.drift import DriftReference
from monitoring.prometheus import model_load_observe
from registry.services.parity import sample_inputs
from registry.storage import artifact_local_path
from runtimes import runtime_load
from runtimes.base import Runtime, warm_inputs
from runtimes.tensors import Signature

logger = logging.getLogger(__name__)

# Runtimes answering a warm batch-1 call faster than this run on the event loop itself: a thread hop would cost
# more than the model. Slower ones run in a thread pool so the loop keeps accepting requests.
INLINE_BELOW_SECONDS = 0.0003


@dataclass(frozen=True)
class VersionKey:
    """What the cache needs to know to load a version: its id, number, format, artifact and signature."""

    id: int
    number: int
    format: str
    artifact_key: str
    size: int
    signature: Signature
    sample_key: str = ""  # the version's sample input, the reference for drift


@dataclass
class LoadedVersion:
    key: VersionKey
    runtime: Runtime
    memory_bytes: int
    load_seconds: float
    inline: bool
    drift: DriftReference | None = None


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class RuntimeCache:
    """Load and warm versions on demand; unload the least recently used unpinned ones when over the budget."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._loaded: OrderedDict[int, LoadedVersion] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}

    def get(self, key: VersionKey) -> LoadedVersion | None:
        """The loaded version, if it is loaded (marked as recently used); never loads."""
        loaded = self._loaded.get(key.id)
        if loaded is not None:
            # Unloaded by another thread in between: still usable by this caller.
            with contextlib.suppress(KeyError):
                self._loaded.move_to_end(key.id)
        return loaded

    def load(self, key: VersionKey) -> LoadedVersion:
        """Return the version loaded and warmed, loading it now if needed (one load per version at a time)."""
        loaded = self.get(key)
        if loaded is not None:
            return loaded
        with self._lock:
            version_lock = self._loading.setdefault(key.id, threading.Lock())
        with version_lock:
            loaded = self.get(key)
            if loaded is not None:
                return loaded
            started = time.perf_counter()
            rss_before = _rss_bytes()
            with artifact_local_path(key.artifact_key) as path:
                runtime = runtime_load(key.format, path, key.signature)
            load_seconds = time.perf_counter() - started
            model_load_observe(format=key.format, seconds=load_seconds)
            memory = max(key.size, _rss_bytes() - rss_before)
            loaded = LoadedVersion(
                key=key,
                runtime=runtime,
                memory_bytes=memory,
                load_seconds=load_seconds,
                inline=_warm_latency(runtime, key.signature) < INLINE_BELOW_SECONDS,
                drift=_drift_reference(key),
            )
            with self._lock:
                self._loaded[key.id] = loaded
                self._loading.pop(key.id, None)
            logger.info(
                "loaded v%s (%s) in %.3f s, ~%.1f MiB, %s",
                key.number,
                key.format,
                load_seconds,
                memory / 2**20,
                "runs on the event loop" if loaded.inline else "runs in the thread pool",
            )
            return loaded

    def evict(self, pinned: Iterable[int]) -> list[int]:
        """Unload least recently used versions not in `pinned` until the total fits the budget."""
        keep = set(pinned)
        evicted = []
        with self._lock:
            total = sum(v.memory_bytes for v in self._loaded.values())
            for version_id in list(self._loaded):
                if total <= self.budget_bytes:
                    break
                if version_id in keep:
                    continue
                total -= self._loaded.pop(version_id).memory_bytes
                evicted.append(version_id)
        if evicted:
            logger.info("unloaded versions %s to stay within %.0f MiB", evicted, self.budget_bytes / 2**20)
        return evicted

    @property
    def loaded_ids(self) -> list[int]:
        return list(self._loaded)

    @property
    def memory_bytes(self) -> int:
        return sum(v.memory_bytes for v in list(self._loaded.values()))


def _drift_reference(key: VersionKey) -> DriftReference | None:
    """The drift reference from the version's sample input, if it has one (a bad sample only costs drift)."""
    if not key.sample_key:
        return None
    try:
        with artifact_local_path(key.sample_key) as path:
            return DriftReference.from_sample(sample_inputs(path, key.signature))
    except Exception:
        logger.warning("no drift reference for v%s: its sample cannot be read", key.number, exc_info=True)
        return None


def _warm_latency(runtime: Runtime, signature: Signature, runs: int = 5) -> float:
    inputs = warm_inputs(signature)
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        runtime.run(inputs)
        best = min(best, time.perf_counter() - started)
    return best
