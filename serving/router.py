"""The traffic router: which warm runtime answers a request to an endpoint, kept in step with the live releases.

Each web process holds a snapshot of every endpoint's live release with its versions already loaded and warmed.
A background thread polls the release stamp (bumped on commit by the control plane) and, when it moves, reads the
live releases, loads and warms any new version, and only then swaps the snapshot in: requests never wait for a
load and never see a version that is not warm. The request path reads a dict; no database query.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
from django.conf import settings
from django.db import close_old_connections

from deployments.models import Release
from deployments.selectors import release_live_list, release_stamp
from registry.formats.base import Signature
from registry.models import ModelVersion
from serving.batching import Batcher
from serving.runtime_cache import INLINE_BELOW_SECONDS, LoadedVersion, RuntimeCache, VersionKey
from serving.shadow import ShadowRecorder

logger = logging.getLogger(__name__)

# Even without a stamp change, re-read the releases this often (a lost cache key must not freeze serving).
FULL_REFRESH_SECONDS = 15.0
# An unknown endpoint name triggers a refresh at most this often (so junk names cannot hammer the database).
MISS_REFRESH_SECONDS = 1.0


@dataclass(frozen=True)
class Route:
    """One endpoint's live release, its versions loaded and warm."""

    endpoint: str
    team_id: int
    public: bool
    release: int
    primary: LoadedVersion
    canary: LoadedVersion | None
    canary_percent: int
    shadow: LoadedVersion | None
    max_batch_size: int
    max_queue_delay_ms: float

    def pick(self) -> LoadedVersion:
        """The version that answers a request without a version: the canary for its share of traffic."""
        if self.canary is not None and random.random() * 100 < self.canary_percent:  # noqa: S311 - traffic split
            return self.canary
        return self.primary

    def live(self) -> list[LoadedVersion]:
        return [v for v in (self.primary, self.canary, self.shadow) if v is not None]

    def version(self, number: int) -> LoadedVersion | None:
        return next((v for v in self.live() if v.key.number == number), None)

    def label(self, label: str) -> LoadedVersion | None:
        return {"stable": self.primary, "canary": self.canary}.get(label)


@dataclass(frozen=True)
class Broken:
    """An endpoint whose live release could not be loaded, with whose it is (only its team may learn why)."""

    team_id: int
    public: bool
    reason: str


@dataclass
class RouterState:
    routes: dict[str, Route] = field(default_factory=dict)
    # Endpoints whose live release could not be loaded (they answer 503 until it can).
    broken: dict[str, Broken] = field(default_factory=dict)


def _version_key(version: ModelVersion) -> VersionKey:
    return VersionKey(
        id=version.pk,
        number=version.number,
        format=version.format,
        artifact_key=version.artifact_key,
        size=version.size,
        signature=Signature.from_dict(version.signature),
        sample_key=version.sample_key,
    )


class Router:
    """Route requests to warm runtimes; follow the control plane's releases within a poll interval."""

    def __init__(self, cache: RuntimeCache, poll_seconds: float) -> None:
        self.cache = cache
        self.poll_seconds = poll_seconds
        self.state = RouterState()
        self.ready = False
        self.refreshed_at = 0.0
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="serving-run")
        self.shadow = ShadowRecorder()
        self._refresh_lock = threading.Lock()
        self._stamp: object = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._batchers: dict[tuple[str, int, int, float], Batcher] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- following the control plane (background thread) -------------------------------------------------------

    def refresh(self) -> None:
        """Read the live releases; load and warm what is new; then swap the snapshot in (one query, then no locks)."""
        with self._refresh_lock:
            stamp = _read_stamp()
            releases = list(release_live_list())
            previous = self.state
            routes: dict[str, Route] = {}
            broken: dict[str, Broken] = {}
            for release in releases:
                try:
                    routes[release.endpoint.name] = self._route(release)
                except Exception as exc:  # a version that cannot load must not stop the others
                    logger.exception("cannot load release %s of %s", release.number, release.endpoint.name)
                    old = previous.routes.get(release.endpoint.name)
                    if old is not None:
                        # Keep serving what was live and warm, but with who may call it as the endpoint says now.
                        routes[old.endpoint] = replace(old, public=release.endpoint.public)
                    broken[release.endpoint.name] = Broken(
                        team_id=release.endpoint.team_id,
                        public=release.endpoint.public,
                        reason=f"release {release.number} cannot be loaded: {exc}",
                    )
            self.state = RouterState(routes=routes, broken=broken)
            self._stamp = stamp
            self.refreshed_at = time.monotonic()
            self.ready = True
            # Previous primaries stay pinned until the next change: an instant rollback finds them warm.
            pinned = {v.key.id for route in [*routes.values(), *previous.routes.values()] for v in route.live()}
            self.cache.evict(pinned)
            self._batchers_prune(routes)

    def _route(self, release: Release) -> Route:
        endpoint = release.endpoint

        def load(version: ModelVersion | None) -> LoadedVersion | None:
            return self.cache.load(_version_key(version)) if version is not None else None

        primary = load(release.primary)
        assert primary is not None
        return Route(
            endpoint=endpoint.name,
            team_id=endpoint.team_id,
            public=endpoint.public,
            release=release.number,
            primary=primary,
            canary=load(release.canary),
            canary_percent=release.canary_percent,
            shadow=load(release.shadow),
            max_batch_size=endpoint.max_batch_size,
            max_queue_delay_ms=endpoint.max_queue_delay_ms,
        )

    def start(self) -> None:
        """Start following the control plane (once per process)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._follow, name="serving-follow", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Check the releases now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._stop.clear()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                if (
                    not self.ready
                    or _read_stamp() != self._stamp
                    or time.monotonic() - self.refreshed_at > FULL_REFRESH_SECONDS
                ):
                    self.refresh()
            except Exception:  # the database or cache may be briefly away; keep serving the last snapshot
                logger.exception("serving could not follow the releases; retrying")
            finally:
                close_old_connections()
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    async def refresh_on_miss(self) -> None:
        """Refresh now for a name not in the snapshot: at once if the releases changed, else at most once a second."""
        if self.ready and time.monotonic() - self.refreshed_at < MISS_REFRESH_SECONDS:
            try:
                changed = _read_stamp() != self._stamp
            except Exception:  # the cache is away: fall back to the once-a-second limit
                logger.warning("cannot read the release stamp", exc_info=True)
                changed = False
            if not changed:
                return
        from asgiref.sync import sync_to_async

        await sync_to_async(self._refresh_closing, thread_sensitive=True)()

    def _refresh_closing(self) -> None:
        # As Django does around each request: no broken or over-age connection kept in asgiref's shared thread.
        close_old_connections()
        try:
            self.refresh()
        finally:
            close_old_connections()

    # --- the request path --------------------------------------------------------------------------------------

    async def infer(self, route: Route, version: LoadedVersion, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one request on a version: through the endpoint's batcher, on the loop, or in the thread pool."""
        if route.max_batch_size > 0:
            return await self._batcher(route, version).submit(inputs)
        if version.inline:
            return version.runtime.run(inputs)
        return await asyncio.get_running_loop().run_in_executor(self.executor, version.runtime.run, inputs)

    def shadow_copy(self, route: Route, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        """Send a copy of a request to the shadow version off the request path and record how it disagreed."""
        if route.shadow is not None:
            self.shadow.submit(route.endpoint, route.shadow, inputs, outputs)

    def _batcher(self, route: Route, version: LoadedVersion) -> Batcher:
        key = (route.endpoint, version.key.id, route.max_batch_size, route.max_queue_delay_ms)
        batcher = self._batchers.get(key)
        if batcher is None:
            batcher = self._batchers[key] = Batcher(
                version.runtime.run,
                max_batch_size=route.max_batch_size,
                max_queue_delay_ms=route.max_queue_delay_ms,
                executor=self.executor,
                inline_below_seconds=INLINE_BELOW_SECONDS if version.inline else 0.0,
            )
            self._loop = asyncio.get_running_loop()
        return batcher

    def _batchers_prune(self, routes: dict[str, Route]) -> None:
        live = {
            (r.endpoint, v.key.id, r.max_batch_size, r.max_queue_delay_ms)
            for r in routes.values()
            for v in r.live()
            if r.max_batch_size > 0
        }
        stale = [key for key in list(self._batchers) if key not in live]
        for key in stale:
            batcher = self._batchers.pop(key)
            # Closing drains what is queued; it runs on the loop that owns the batcher.
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(_close_soon, batcher)


_closing: set[asyncio.Task[None]] = set()


def _close_soon(batcher: Batcher) -> None:
    # Keep a reference until done: the loop holds tasks only weakly.
    task = asyncio.ensure_future(batcher.close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def _read_stamp() -> object:
    return release_stamp()


_router: Router | None = None
_router_lock = threading.Lock()


def router_get() -> Router:
    """This process's router (created on first use)."""
    global _router
    if _router is None:
        with _router_lock:
            if _router is None:
                _router = Router(
                    RuntimeCache(budget_bytes=settings.MODELDECK_SERVING_MEMORY_MB * 2**20),
                    poll_seconds=settings.MODELDECK_SERVING_POLL_SECONDS,
                )
    return _router


def router_reset() -> None:
    """Forget this process's router (tests: a fresh snapshot and cache)."""
    global _router
    with _router_lock:
        if _router is not None:
            _router.stop()
        _router = None
