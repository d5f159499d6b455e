"""The traffic router: which warm runtime answers a request to an endpoint, kept in step with the live releases.

Each web process holds a snapshot of every endpoint's live release with its versions already loaded and warmed.
A background thread polls the release stamp (bumped on commit by the control plane) and, when it moves, reads the
live releases, loads and warms any new version, and only then swaps the snapshot in: requests never wait for a
load and never see a version that is not warm. The request path reads a dict; no database query.

The database is the truth, the stamp only a hint: while the cache is away the stamp reads as "unknown", and the
first good read after that differs from it, so every process re-reads the releases within a poll of the cache's
return (a bump missed during the outage is never waited for).
"""

from __future__ import annotations

import asyncio
import logging
import math
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
from registry.load_check import load_error_text
from registry.models import ModelVersion
from runtimes.tensors import Signature
from serving.batching import Batcher
from serving.outage import DATABASE_AWAY
from serving.runtime_cache import INLINE_BELOW_SECONDS, LoadedVersion, RuntimeCache, VersionKey
from serving.shadow import ShadowRecorder

logger = logging.getLogger(__name__)

# Even without a stamp change, re-read the releases this often (a lost cache key must not freeze serving).
FULL_REFRESH_SECONDS = 15.0
# An unknown endpoint name triggers a refresh at most this often (so junk names cannot hammer the database).
MISS_REFRESH_SECONDS = 1.0
# While the releases cannot be read, the follower tries again after a poll interval, doubled per failure up to this.
RETRY_MAX_SECONDS = 5.0
# The stamp as read while the cache is away: equal only to itself, so the first good read after it is a change.
STAMP_UNREAD = object()


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
    """An endpoint whose live release could not be loaded, with whose it is (only its team may learn it, and why)."""

    team_id: int
    reason: str


@dataclass
class RouterState:
    routes: dict[str, Route] = field(default_factory=dict)
    # Endpoints whose live release could not be loaded: not ready to their team until it can be; an earlier
    # release still in `routes` keeps serving meanwhile. The server itself stays ready (one team's model never
    # takes a process out of rotation).
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
        self._miss_failed_at = -math.inf
        self._stamp_unreadable = False
        self._changed = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._batchers: dict[tuple[str, int, int, float], Batcher] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- following the control plane (background thread) -------------------------------------------------------

    def refresh(self) -> None:
        """Read the live releases; load and warm what is new; then swap the snapshot in (one query, then no locks)."""
        with self._refresh_lock:
            stamp = self._stamp_read()
            releases = list(release_live_list())
            previous = self.state
            routes: dict[str, Route] = {}
            broken: dict[str, Broken] = {}
            for release in releases:
                try:
                    routes[release.endpoint.name] = self._route(release)
                except Exception as exc:  # a version that cannot load must not stop the others
                    logger.exception("cannot load release %s of %s", release.number, release.endpoint.name)
                    # The reason goes to the endpoint's team: the root cause, without this server's paths.
                    reason = f"release {release.number} cannot be loaded: {load_error_text(exc)}"
                    old = previous.routes.get(release.endpoint.name)
                    if old is not None:
                        # Keep serving what was live and warm, but with who may call it as the endpoint says now.
                        routes[old.endpoint] = replace(old, public=release.endpoint.public)
                        reason += f"; release {old.release} still serves"
                    broken[release.endpoint.name] = Broken(team_id=release.endpoint.team_id, reason=reason)
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
        """Re-read the releases now: this process changed them (the stamp may not have moved if the cache is away)."""
        self._changed = True
        self._wake.set()

    def _stamp_read(self) -> object:
        """The release stamp, or STAMP_UNREAD while the cache is away (said once per outage, not every poll)."""
        try:
            stamp = _read_stamp()
        except Exception:
            if not self._stamp_unreadable:
                logger.warning("cannot read the release stamp; following the database alone", exc_info=True)
            self._stamp_unreadable = True
            return STAMP_UNREAD
        if self._stamp_unreadable:
            logger.info("the release stamp is readable again; re-reading the releases")
            self._stamp_unreadable = False
        return stamp

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._stop.clear()

    def _follow(self) -> None:
        wait = self.poll_seconds
        while not self._stop.is_set():
            changed, self._changed = self._changed, False
            try:
                if (
                    changed
                    or not self.ready
                    or self._stamp_read() != self._stamp
                    or time.monotonic() - self.refreshed_at > FULL_REFRESH_SECONDS
                ):
                    self.refresh()
                wait = self.poll_seconds
            except Exception:  # the database may be briefly away; keep serving the last snapshot
                logger.exception("serving could not follow the releases; retrying in %.1f s", wait)
                self._changed = self._changed or changed
                wait = min(wait * 2, max(RETRY_MAX_SECONDS, self.poll_seconds))
            finally:
                close_old_connections()
            self._wake.wait(wait)
            self._wake.clear()

    async def refresh_on_miss(self) -> bool:
        """Refresh now for a name not in the snapshot: at once if the releases changed, else at most once a second.

        True when the snapshot is up to date, so a name not in it is no endpoint; False when that cannot be told now
        (the releases cannot be read, and the release stamp has moved since the snapshot or cannot be read).
        """
        # While the cache is away the stamp reads unchanged: the once-a-second limit applies. So it does after a
        # failed read of the releases (junk names must not hammer a database that is away either).
        recent = max(self.refreshed_at, self._miss_failed_at)
        if self.ready and time.monotonic() - recent < MISS_REFRESH_SECONDS:
            if self._miss_failed_at > self.refreshed_at:
                return self._snapshot_current()
            if self._stamp_read() == self._stamp:
                return True
        from asgiref.sync import sync_to_async

        try:
            await sync_to_async(self._refresh_closing, thread_sensitive=True)()
        except DATABASE_AWAY:
            self._miss_failed_at = time.monotonic()
            logger.warning("cannot read the releases for a name not in the snapshot", exc_info=True)
            return self._snapshot_current()
        return True

    def _snapshot_current(self) -> bool:
        """Whether nothing was released since the snapshot, as far as the release stamp tells without the database."""
        stamp = self._stamp_read()
        return self.ready and stamp is not None and stamp is not STAMP_UNREAD and stamp == self._stamp

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

    def shadow_copy(
        self, route: Route, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], protocol: str = "http"
    ) -> None:
        """Send a copy of a request to the shadow version off the request path and record how it disagreed."""
        if route.shadow is not None:
            self.shadow.submit(route.endpoint, route.shadow, inputs, outputs, protocol)

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
