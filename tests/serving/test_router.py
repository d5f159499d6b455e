"""The router: follows releases, swaps only warm versions, keeps the last primary, sheds memory, shadows, batches."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx
import numpy as np
import pytest
from asgiref.sync import sync_to_async

from deployments.services import endpoint_update, release_promote, release_rollback
from monitoring.recorder import Series, recorder
from runtimes.tensors import Signature
from serving.router import Router, router_get
from serving.runtime_cache import LoadedVersion, RuntimeCache, VersionKey
from serving.shadow import MAX_PENDING, ShadowRecorder
from teams.choices import Role
from teams.permissions import Actor
from tests.serving.conftest import Deployed

pytestmark = pytest.mark.django_db(transaction=True)

X = (np.arange(8, dtype=np.float32).reshape(2, 4) - 3) / 2


@pytest.fixture
def releaser(deployed: Deployed, make_member) -> Actor:
    return Actor(user=make_member(team=deployed.dev.team, role=Role.DEVELOPER, username="releaser").user)


def infer_body(x: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}


async def refresh() -> None:
    await sync_to_async(router_get()._refresh_closing, thread_sensitive=True)()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the router did not follow in time")
        time.sleep(0.01)


def test_follows_promote_and_rollback_and_keeps_the_previous_primary_warm(deployed: Deployed, releaser) -> None:
    router = router_get()
    router.start()
    wait_for(lambda: "iris" in router.state.routes)
    assert router.state.routes["iris"].primary.key.number == 1

    release_promote(actor=releaser, endpoint=deployed.private, version=deployed.versions[2])
    wait_for(lambda: router.state.routes["iris"].primary.key.number == 2)
    # The version just replaced is still loaded: a rollback needs no load.
    assert deployed.versions[1].pk in router.cache.loaded_ids
    loads = router.cache.loaded_ids.copy()

    release_rollback(actor=releaser, endpoint=deployed.private)
    wait_for(lambda: router.state.routes["iris"].primary.key.number == 1)
    assert router.cache.loaded_ids == loads
    assert router.state.routes["iris"].release == 3


def test_another_process_follows_through_the_release_stamp_alone(deployed: Deployed, releaser) -> None:
    """A router that no signal wakes (as in another web process) sees the change through the polled stamp."""
    elsewhere = Router(RuntimeCache(budget_bytes=2**30), poll_seconds=0.05)
    elsewhere.start()
    try:
        wait_for(lambda: "iris" in elsewhere.state.routes)
        release_promote(actor=releaser, endpoint=deployed.private, version=deployed.versions[2])
        wait_for(lambda: elsewhere.state.routes["iris"].primary.key.number == 2)
        assert sorted(elsewhere.cache.loaded_ids) == sorted(v.pk for v in deployed.versions.values())
    finally:
        elsewhere.stop()


async def test_a_release_that_cannot_load_leaves_the_previous_one_serving(
    deployed: Deployed, releaser, client: httpx.AsyncClient, artifact_dir: Path
) -> None:
    await refresh()
    (artifact_dir / deployed.versions[2].artifact_key).unlink()
    await sync_to_async(release_promote)(actor=releaser, endpoint=deployed.private, version=deployed.versions[2])
    await refresh()

    response = await client.post("/v2/models/iris/infer", json=infer_body(X), headers=deployed.auth())
    assert response.status_code == 200
    assert response.json()["model_version"] == "1"
    reason = router_get().state.broken["iris"].reason
    assert reason.startswith("release 2 cannot be loaded: ") and reason.endswith("; release 1 still serves")
    assert str(artifact_dir) not in reason
    # One endpoint's release that cannot load never takes the server out of rotation.
    ready = await client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


async def test_the_release_kept_serving_follows_the_endpoints_public_flag(
    deployed: Deployed, releaser, client: httpx.AsyncClient, artifact_dir: Path
) -> None:
    await refresh()
    (artifact_dir / deployed.versions[2].artifact_key).unlink()
    await sync_to_async(release_promote)(actor=releaser, endpoint=deployed.private, version=deployed.versions[2])
    await sync_to_async(endpoint_update)(actor=releaser, endpoint=deployed.private, public=True)
    await refresh()
    assert "iris" in router_get().state.broken

    # Release 1 still answers (release 2 cannot load), and now without a token, as the endpoint says.
    response = await client.post("/v2/models/iris/infer", json=infer_body(X))
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "1"

    await sync_to_async(endpoint_update)(actor=releaser, endpoint=deployed.private, public=False)
    await refresh()
    response = await client.post("/v2/models/iris/infer", json=infer_body(X))
    assert response.status_code == 401, response.text


def test_memory_budget_unloads_least_recently_used_unpinned_versions(deployed: Deployed) -> None:
    cache = RuntimeCache(budget_bytes=1)
    keys = [
        VersionKey(
            id=v.pk,
            number=v.number,
            format=v.format,
            artifact_key=v.artifact_key,
            size=v.size,
            signature=Signature.from_dict(v.signature),
        )
        for v in deployed.versions.values()
    ]
    for key in keys:
        cache.load(key)
    assert cache.loaded_ids == [keys[0].id, keys[1].id]
    assert cache.evict(pinned={keys[1].id}) == [keys[0].id]
    assert cache.loaded_ids == [keys[1].id]
    # Pinned versions stay even when they alone exceed the budget.
    assert cache.evict(pinned={keys[1].id}) == []


async def test_shadow_gets_a_copy_off_the_request_path_and_disagreement_is_counted(
    deployed: Deployed, releaser, client: httpx.AsyncClient
) -> None:
    await sync_to_async(release_promote)(
        actor=releaser, endpoint=deployed.private, version=deployed.versions[1], shadow_version=deployed.versions[2]
    )
    await refresh()
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((2, 4)).astype(np.float32) * 3 for _ in range(10)]
    for x in batches:
        response = await client.post("/v2/models/iris/infer", json=infer_body(x), headers=deployed.auth())
        assert response.json()["model_version"] == "1"
        np.testing.assert_allclose(
            np.array(response.json()["outputs"][0]["data"]).reshape(2, 3), deployed.expected(1, x), rtol=1e-6
        )
    shadow = await recorded(("iris", 2, "shadow"), count=10)

    differ = sum(
        bool((deployed.expected(1, x).argmax(axis=1) != deployed.expected(2, x).argmax(axis=1)).any()) for x in batches
    )
    assert 0 < differ < 10  # the seeds make the versions disagree on some rows, not all: a real count is checked
    assert (shadow.count, shadow.disagreements, shadow.codes, shadow.rows) == (10, differ, {200: 10}, 20)

    # Naming the shadow's version explicitly is a normal request to it, and makes no shadow copy.
    response = await client.post("/v2/models/iris/versions/2/infer", json=infer_body(X), headers=deployed.auth())
    assert response.json()["model_version"] == "2"
    direct = await recorded(("iris", 2, "shadow"), count=2, timeout=0.5)
    assert direct.count == 1  # the request itself (v2 is the shadow): no copy of it was made


async def recorded(key: tuple[str, int, str], count: int, timeout: float = 5.0) -> Series:
    """The recorder's numbers for `key` once `count` requests reached it (shadow copies arrive from a thread)."""
    router_get().shadow.drain()
    seen = Series()
    deadline = time.monotonic() + timeout
    while True:
        await asyncio.sleep(0.01)
        window = recorder.swap()
        if key in window:
            seen.merge(window[key])
        if seen.count >= count or time.monotonic() > deadline:
            return seen


async def test_dynamic_batching_stacks_concurrent_requests(
    deployed: Deployed, releaser, client: httpx.AsyncClient
) -> None:
    await sync_to_async(endpoint_update)(
        actor=releaser, endpoint=deployed.private, max_batch_size=8, max_queue_delay_ms=50.0
    )
    await refresh()
    rng = np.random.default_rng(5)
    inputs = [rng.standard_normal((1, 4)).astype(np.float32) for _ in range(16)]
    responses = await asyncio.gather(
        *(client.post("/v2/models/iris/infer", json=infer_body(x), headers=deployed.auth()) for x in inputs)
    )
    for x, response in zip(inputs, responses, strict=True):
        assert response.status_code == 200
        np.testing.assert_allclose(
            np.array(response.json()["outputs"][0]["data"]).reshape(1, 3), deployed.expected(1, x), rtol=1e-6
        )
    (batcher,) = router_get()._batchers.values()
    assert batcher.stats.requests == 16
    assert batcher.stats.batches < 16
    assert batcher.stats.max_batch_rows > 1


async def test_shadow_copies_beyond_the_pending_limit_are_dropped_and_said(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    runs: list[int] = []

    def slow_run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        release.wait(10)
        runs.append(1)
        return {"probs": np.zeros((1, 3), np.float32)}

    shadow = ShadowRecorder(workers=1)
    version = cast(LoadedVersion, SimpleNamespace(key=SimpleNamespace(number=2), runtime=SimpleNamespace(run=slow_run)))
    x = {"x": np.zeros((1, 4), np.float32)}
    with caplog.at_level("WARNING", logger="serving.shadow"):
        for _ in range(MAX_PENDING + 10):  # the caller never waits, whatever the shadow does
            shadow.submit("iris", version, x, {"probs": np.zeros((1, 3), np.float32)})
    release.set()
    shadow.drain()
    assert len(runs) == MAX_PENDING  # the rest were dropped, not queued
    warnings = [r.getMessage() for r in caplog.records if r.name == "serving.shadow"]
    assert len(warnings) == 1  # at most one a minute per endpoint
    assert warnings[0].startswith(f"shadow copies of iris are dropped: {MAX_PENDING} copies are already waiting")
    await asyncio.sleep(0.05)
    recorder.swap()  # the copies' numbers reached the process's recorder: leave it empty for the next test


def test_a_deleted_endpoint_stops_serving(deployed: Deployed, releaser) -> None:
    from deployments.services import endpoint_delete

    router = router_get()
    router.start()
    wait_for(lambda: "iris" in router.state.routes)
    endpoint_delete(actor=releaser, endpoint=deployed.private, confirm="iris")
    wait_for(lambda: "iris" not in router.state.routes)
    assert "iris-public" in router.state.routes  # the model's other endpoint serves on
