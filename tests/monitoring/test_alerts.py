"""Alert rules and auto-rollback: the rules API, the evaluator on synthetic windows, and a bad canary end to end."""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.db import OperationalError, connections

from common.channel_groups import team_group
from deployments.models import Endpoint, Release
from deployments.services import endpoint_create, release_promote, release_rollback_automatic
from monitoring.alerts import evaluation
from monitoring.alerts.cluster import READ_LAG_SECONDS
from monitoring.alerts.evaluation import AlertEvaluator
from monitoring.alerts.firing import alert_data
from monitoring.alerts.history import RunningTotals, metric_value
from monitoring.flusher import Flusher
from monitoring.models import Alert, AlertRule
from monitoring.recorder import LATENCY_BOUNDS, Series, SeriesKey, recorder
from registry.models import ModelVersion
from registry.services.versions import registered_model_create
from serving.router import router_get
from teams.choices import Role
from teams.models import AuditEvent
from teams.permissions import Actor
from tests.conftest import Member
from tests.deployments.test_endpoint_apis import add_version
from tests.serving import conftest as serving_fixtures
from tests.serving.conftest import Deployed

# The data plane's fixtures (a committed endpoint, an in-process client); every test gets a fresh router anyway.
deployed = serving_fixtures.deployed
client = serving_fixtures.client

# --- helpers ---------------------------------------------------------------------------------------------------


@dataclass
class Canary:
    """Team alpha's endpoint "iris": release 1 serves v1, release 2 sends 10 % to a canary v2."""

    dev: Member
    admin: Member
    viewer: Member
    endpoint: Endpoint
    versions: dict[int, ModelVersion]


@pytest.fixture
def canary(make_member, team_a, team_b, artifact_dir, tmp_path, monkeypatch) -> Canary:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    dev = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    admin = make_member(team=team_a, role=Role.ADMIN, username="boss")
    viewer = make_member(team=team_a, role=Role.VIEWER, username="watcher")
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    versions = {seed: add_version(model, actor, tmp_path, seed) for seed in (1, 2, 3)}
    endpoint = endpoint_create(actor=actor, model=model, name="iris", version=versions[1])
    release_promote(actor=actor, endpoint=endpoint, version=versions[2], canary_percent=10, reason="try v2")
    return Canary(dev, admin, viewer, endpoint, versions)


def rule_create(endpoint: Endpoint, **fields: Any) -> AlertRule:
    values = {
        "name": "canary errors",
        "metric": "error_rate",
        "threshold": 0.05,
        "window_seconds": 60,
        "min_requests": 50,
        "action": "rollback",
        "bake_seconds": 600,
        **fields,
    }
    return AlertRule.objects.create(endpoint=endpoint, **values)


def served(count: int, errors: int = 0, disagreements: int = 0, seconds: float = 0.001) -> Series:
    series = Series(count=count, errors=errors, disagreements=disagreements, latency_sum=count * seconds)
    series.codes = {code: n for code, n in ((200, count - errors), (500, errors)) if n}
    series.latency_buckets[bisect.bisect_left(LATENCY_BOUNDS, seconds)] = count
    return series


def canary_window(count: int, errors: int, primary: int = 300) -> dict[SeriesKey, Series]:
    return {("iris", 2, "canary"): served(count, errors), ("iris", 1, "primary"): served(primary)}


async def listen(team: str) -> tuple[Any, str]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(team_group(team), channel)
    return layer, channel


@pytest.fixture
async def _close_db_threads() -> AsyncIterator[None]:
    yield
    # The ORM ran in asgiref's shared thread: close that connection before the test database is dropped.
    await sync_to_async(connections.close_all, thread_sensitive=True)()


def releases(endpoint: Endpoint) -> list[tuple[int, str, int, int | None, int | None]]:
    return [
        (r.number, r.action, r.primary.number, r.canary.number if r.canary else None, r.actor_id)
        for r in endpoint.releases.select_related("primary", "canary").order_by("number")
    ]


# --- the rules API ---------------------------------------------------------------------------------------------

RULE = {"name": "canary errors", "metric": "error_rate", "threshold": 0.05, "action": "rollback"}


@pytest.mark.django_db
def test_developers_create_list_and_delete_rules_audited(canary: Canary) -> None:
    api = canary.dev.token_client()
    created = api.post("/api/v1/endpoints/iris/alert-rules", RULE, format="json")
    assert created.status_code == 201, created.json()
    rule = AlertRule.objects.get()
    assert created.json() == {
        "id": rule.pk,
        "name": "canary errors",
        "metric": "error_rate",
        "threshold": 0.05,
        "window_seconds": 60,
        "min_requests": 50,
        "action": "rollback",
        "bake_seconds": 600,
        "enabled": True,
        "created_by": "dev",
        "created_at": created.json()["created_at"],
    }
    viewer = canary.viewer.token_client()
    assert [r["name"] for r in viewer.get("/api/v1/endpoints/iris/alert-rules").json()] == ["canary errors"]
    assert viewer.post("/api/v1/endpoints/iris/alert-rules", {**RULE, "name": "x"}, format="json").status_code == 403
    assert viewer.delete(f"/api/v1/endpoints/iris/alert-rules/{rule.pk}").status_code == 403
    again = api.post("/api/v1/endpoints/iris/alert-rules", RULE, format="json")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_exists")

    assert api.delete(f"/api/v1/endpoints/iris/alert-rules/{rule.pk}").status_code == 204
    assert api.delete(f"/api/v1/endpoints/iris/alert-rules/{rule.pk}").status_code == 404
    assert not AlertRule.objects.exists()
    events = list(AuditEvent.objects.filter(action__startswith="alert_rule.").order_by("id"))
    assert [(e.action, e.actor_id) for e in events] == [
        ("alert_rule.create", canary.dev.user.pk),
        ("alert_rule.delete", canary.dev.user.pk),
    ]
    assert events[0].data == {
        "endpoint": "iris",
        "rule": rule.pk,
        "name": "canary errors",
        "metric": "error_rate",
        "threshold": 0.05,
        "window_seconds": 60,
        "min_requests": 50,
        "action": "rollback",
        "bake_seconds": 600,
        "enabled": True,
    }
    assert events[1].data == events[0].data


@pytest.mark.django_db
def test_rules_on_protected_endpoints_are_for_admins(canary: Canary) -> None:
    Endpoint.objects.filter(pk=canary.endpoint.pk).update(protected=True)
    url = "/api/v1/endpoints/iris/alert-rules"
    assert canary.dev.token_client().post(url, RULE, format="json").status_code == 403
    assert canary.admin.token_client().post(url, RULE, format="json").status_code == 201
    rule = AlertRule.objects.get()
    assert canary.dev.token_client().delete(f"{url}/{rule.pk}").status_code == 403
    assert canary.admin.token_client().delete(f"{url}/{rule.pk}").status_code == 204


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"metric": "drift"}, "metric"),
        ({"metric": "error_rate", "threshold": 1.5}, "threshold"),
        ({"metric": "disagreement_rate", "threshold": 1}, "threshold"),
        ({"metric": "p95_ms", "threshold": 20000}, "threshold"),
        ({"threshold": -1}, "threshold"),
        ({"threshold": "high"}, "threshold"),
        ({"window_seconds": 5}, "window_seconds"),
        ({"window_seconds": 3601}, "window_seconds"),
        ({"min_requests": 0}, "min_requests"),
        ({"action": "page"}, "action"),
        ({"bake_seconds": -1}, "bake_seconds"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_rules_get_400_and_change_nothing(canary: Canary, change: dict[str, Any], field: str) -> None:
    response = canary.dev.token_client().post("/api/v1/endpoints/iris/alert-rules", {**RULE, **change}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == "invalid"
    assert field in response.json()["error"]["detail"]
    assert not AlertRule.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="alert_rule.").exists()


@pytest.mark.django_db
def test_a_p95_rule_in_milliseconds_is_accepted(canary: Canary) -> None:
    body = {"name": "slow", "metric": "p95_ms", "threshold": 250, "window_seconds": 300, "min_requests": 20}
    response = canary.dev.token_client().post("/api/v1/endpoints/iris/alert-rules", body, format="json")
    assert response.status_code == 201, response.json()
    assert (response.json()["threshold"], response.json()["action"]) == (250.0, "notify")


@pytest.mark.django_db
def test_outsiders_get_404_for_rules_and_alerts(canary: Canary, make_member, team_b) -> None:
    rule = rule_create(canary.endpoint)
    outsider = make_member(team=team_b, role=Role.ADMIN, username="outsider").token_client()
    for response in (
        outsider.get("/api/v1/endpoints/iris/alert-rules"),
        outsider.post("/api/v1/endpoints/iris/alert-rules", {**RULE, "name": "mine"}, format="json"),
        outsider.delete(f"/api/v1/endpoints/iris/alert-rules/{rule.pk}"),
        outsider.get("/api/v1/endpoints/iris/alerts"),
    ):
        assert response.status_code == 404
    # A rule id of another endpoint is not found through this one.
    assert canary.dev.token_client().delete(f"/api/v1/endpoints/nope/alert-rules/{rule.pk}").status_code == 404
    assert AlertRule.objects.count() == 1


@pytest.mark.django_db
def test_alerts_list_newest_first_in_constant_queries(canary: Canary, django_assert_num_queries) -> None:
    rule = rule_create(canary.endpoint, action="notify")
    api = canary.viewer.token_client()
    for release in (1, 2):
        Alert.objects.create(
            rule=rule,
            rule_name=rule.name,
            endpoint=canary.endpoint,
            release=release,
            version=release,
            role="primary",
            metric="error_rate",
            value=0.5,
            threshold=0.05,
            window_seconds=60,
            requests=100,
        )
    assert api.get("/api/v1/endpoints/iris/alerts").json()[0] == {
        "id": Alert.objects.get(release=2).pk,
        "rule": rule.pk,
        "rule_name": "canary errors",
        "metric": "error_rate",
        "release": 2,
        "version": 2,
        "role": "primary",
        "value": 0.5,
        "threshold": 0.05,
        "window_seconds": 60,
        "requests": 100,
        "fired_at": api.get("/api/v1/endpoints/iris/alerts").json()[0]["fired_at"],
        "action_taken": "notified",
        "rollback_release": None,
        "detail": "",
    }
    # token, token's last use is fresh (no write), endpoint, role, alerts
    with django_assert_num_queries(4):
        assert [a["release"] for a in api.get("/api/v1/endpoints/iris/alerts").json()] == [2, 1]


# --- metrics over windows --------------------------------------------------------------------------------------


def test_running_totals_sum_any_window_and_forget_the_oldest() -> None:
    track = RunningTotals()
    for second, (count, errors) in enumerate([(10, 1), (20, 2), (30, 3)], start=100):
        track.add(second, served(count, errors))
    assert track.between(100, 102)[:2] == (60, 6)
    assert track.between(101, 105)[:2] == (50, 5)
    assert track.between(90, 100)[:2] == (10, 1)
    assert track.between(103, 110)[:2] == (0, 0)
    track.prune(102)
    assert (list(track.seconds), track.between(0, 200)[:2]) == ([102], (30, 3))
    track.add(102, served(5, 5))  # the same second again folds in
    assert track.between(102, 102)[:2] == (35, 8)


def test_metric_values() -> None:
    fast, slow = served(90, seconds=0.001), served(10, seconds=0.3)
    fast.merge(slow)
    totals = (fast.count, 7, 3, *fast.latency_buckets)
    assert metric_value("error_rate", totals) == pytest.approx(0.07)
    assert metric_value("disagreement_rate", totals) == pytest.approx(0.03)
    # The 95th of 100 is the 5th of the 10 in (0.25, 0.5] s: halfway through that bucket.
    assert metric_value("p95_ms", totals) == pytest.approx(375.0)
    beyond = served(10, seconds=60)
    assert metric_value("p95_ms", (10, 0, 0, *beyond.latency_buckets)) == 10_000.0


# --- the evaluator ---------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_db_threads")
async def test_a_failing_canary_is_rolled_back_audited_and_announced(canary: Canary) -> None:
    rule = await sync_to_async(rule_create)(canary.endpoint)
    layer, channel = await listen("alpha")
    evaluator = AlertEvaluator()
    now = time.time() + 2  # both seconds below are after the canary release went live
    second = int(now) - 1
    evaluator.observe(second - 1, canary_window(30, 2))
    assert await evaluator.evaluate(now - 1) == []  # 30 requests: below min_requests, whatever their error rate
    evaluator.observe(second, canary_window(30, 10))
    [alert] = await evaluator.evaluate(now)  # 60 requests over the window, 12 of them errors

    assert await sync_to_async(releases)(canary.endpoint) == [
        (1, "create", 1, None, canary.dev.user.pk),
        (2, "canary", 1, 2, canary.dev.user.pk),
        (3, "rollback", 1, None, None),
    ]
    evidence = {
        "rule": {"id": rule.pk, "name": "canary errors"},
        "metric": "error_rate",
        "value": 0.2,
        "threshold": 0.05,
        "window_seconds": 60,
        "requests": 60,
        "release": 2,
        "version": 2,
        "role": "canary",
    }
    audit = await sync_to_async(AuditEvent.objects.get)(action="endpoint.auto_rollback")
    assert (audit.actor_id, audit.target_id) == (None, str(canary.endpoint.pk))
    assert audit.data == {
        "endpoint": "iris",
        "release": 3,
        "primary": 1,
        "canary": None,
        "canary_percent": 0,
        "shadow": None,
        "reason": "Automatic rollback: alert rule 'canary errors': error_rate 0.2 > 0.05 on v2 (canary) of release 2 "
        "over 60 s (60 requests).",
        "by": "automatic (rule canary errors)",
        "previous_release": 2,
        "evidence": evidence,
    }
    stored = await sync_to_async(Alert.objects.get)()
    assert (stored.pk, stored.rule_id, stored.release, stored.version, stored.role) == (
        alert.pk,
        rule.pk,
        2,
        2,
        "canary",
    )
    assert (stored.value, stored.threshold, stored.requests, stored.window_seconds) == (0.2, 0.05, 60, 60)
    assert (stored.action_taken, stored.rollback_release) == ("rolled_back", 3)
    assert stored.detail == "Rolled back: the canary v2 is removed; release 3 serves v1."
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    # The rollback's own release comes first on the stream (announced on commit), then the alert.
    assert message == {
        "type": "team.event",
        "event": {
            "kind": "release",
            "data": {
                "endpoint": "iris",
                "release": 3,
                "primary": 1,
                "canary": None,
                "canary_percent": 0,
                "shadow": None,
                "reason": audit.data["reason"],
                "by": "automatic (rule canary errors)",
                "action": "rollback",
            },
        },
    }
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    assert message == {"type": "team.event", "event": {"kind": "alert", "data": alert_data(stored, "iris")}}
    assert message["event"]["data"]["action_taken"] == "rolled_back"

    # The same rule, release and version never fire twice, here or in another (restarted) process.
    evaluator.observe(second + 1, canary_window(100, 100))
    assert await evaluator.evaluate(now + 1) == []
    assert await sync_to_async(Alert.objects.count)() == 1
    assert await sync_to_async(Release.objects.filter(endpoint=canary.endpoint).count)() == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_db_threads")
async def test_low_traffic_never_fires(canary: Canary) -> None:
    await sync_to_async(rule_create)(canary.endpoint)
    evaluator = AlertEvaluator()
    now = time.time() + 1
    evaluator.observe(int(now) - 1, canary_window(49, 49))
    assert await evaluator.evaluate(now) == []
    assert await sync_to_async(Alert.objects.exists)() is False
    assert await sync_to_async(Release.objects.count)() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_db_threads")
async def test_past_the_bake_period_a_rollback_rule_only_notifies(canary: Canary) -> None:
    await sync_to_async(rule_create)(canary.endpoint, bake_seconds=600)
    layer, channel = await listen("alpha")
    evaluator = AlertEvaluator()
    now = time.time() + 700  # the canary release is 700 s old by then
    evaluator.observe(int(now) - 1, canary_window(100, 50))
    [alert] = await evaluator.evaluate(now)
    assert (alert.action_taken, alert.rollback_release) == ("notified", None)
    assert "past the 600 s bake period" in alert.detail
    assert await sync_to_async(Release.objects.count)() == 2
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    assert message["event"]["data"]["action_taken"] == "notified"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_db_threads")
async def test_notify_rules_watch_every_live_version_and_shadows_only_notify(canary: Canary) -> None:
    actor = Actor(user=canary.dev.user)
    await sync_to_async(release_promote)(
        actor=actor,
        endpoint=canary.endpoint,
        version=canary.versions[2],
        canary_percent=10,
        shadow_version=canary.versions[3],
    )
    await sync_to_async(rule_create)(canary.endpoint, name="slow", metric="p95_ms", threshold=100, action="notify")
    await sync_to_async(rule_create)(canary.endpoint, name="unlike", metric="disagreement_rate", threshold=0.1)
    evaluator = AlertEvaluator()
    now = time.time() + 1
    window = {
        ("iris", 1, "primary"): served(100, seconds=0.002),
        ("iris", 2, "canary"): served(100, seconds=0.4),
        ("iris", 3, "shadow"): served(100, disagreements=30, seconds=0.3),
    }
    evaluator.observe(int(now) - 1, window)
    alerts = await evaluator.evaluate(now)
    fired = sorted((a.rule_name, a.version, a.role, a.value, a.action_taken) for a in alerts)
    assert fired == [
        ("slow", 2, "canary", 487.5, "notified"),  # all in (250, 500] ms: 95 % of the way through it
        ("slow", 3, "shadow", 487.5, "notified"),
        ("unlike", 3, "shadow", 0.3, "notified"),  # a rollback rule: the shadow answers no caller
    ]
    assert await sync_to_async(Release.objects.count)() == 3
    # A restarted process (nothing fired in its memory) finds the alerts already stored.
    again = AlertEvaluator()
    again.observe(int(now) - 1, window)
    assert await again.evaluate(now) == []
    assert await sync_to_async(Alert.objects.count)() == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_db_threads")
async def test_two_processes_firing_at_once_roll_back_once(canary: Canary) -> None:
    await sync_to_async(rule_create)(canary.endpoint)
    await sync_to_async(rule_create)(canary.endpoint, name="also errors", threshold=0.1)
    now = time.time() + 1
    evaluators = [AlertEvaluator(), AlertEvaluator()]
    for evaluator in evaluators:
        evaluator.observe(int(now) - 1, canary_window(100, 50))
    fired = [a for alerts in await asyncio.gather(*(e.evaluate(now) for e in evaluators)) for a in alerts]
    assert await sync_to_async(releases)(canary.endpoint) == [
        (1, "create", 1, None, canary.dev.user.pk),
        (2, "canary", 1, 2, canary.dev.user.pk),
        (3, "rollback", 1, None, None),
    ]
    # One alert per rule; of the two rules' alerts exactly one rolled back, the other found release 2 gone.
    assert sorted(a.action_taken for a in fired) == ["notified", "rolled_back"]
    assert await sync_to_async(Alert.objects.count)() == 2
    notified = next(a for a in fired if a.action_taken == "notified")
    assert notified.detail == "Release 2 was no longer live: nothing rolled back."
    assert await sync_to_async(AuditEvent.objects.filter(action="endpoint.auto_rollback").count)() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_db_threads")
async def test_a_database_that_is_away_delays_the_alert_never_loses_it(canary: Canary, monkeypatch) -> None:
    await sync_to_async(rule_create)(canary.endpoint, action="notify")
    evaluator = AlertEvaluator()
    now = time.time() + 1
    evaluator.observe(int(now) - 1, canary_window(100, 50))
    real = evaluation.alert_fire
    calls: list[int] = []

    def database_away(**kwargs: Any) -> Alert | None:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("the database is away")
        return real(**kwargs)

    monkeypatch.setattr(evaluation, "alert_fire", database_away)
    assert await evaluator.evaluate(now) == []
    [alert] = await evaluator.evaluate(now + 1)
    assert (alert.version, alert.action_taken, len(calls)) == (2, "notified", 2)


@pytest.mark.django_db(transaction=True)
def test_automatic_rollback_from_two_threads_at_once_happens_once(canary: Canary) -> None:
    start = threading.Barrier(2)
    results: list[Release | None] = []

    def roll_back() -> None:
        try:
            endpoint = Endpoint.objects.get(pk=canary.endpoint.pk)
            start.wait(timeout=5)
            results.append(
                release_rollback_automatic(
                    endpoint=endpoint, rule="canary errors", reason="test", evidence={"release": 2}
                )
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=roll_back) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(r.number if r else 0 for r in results) == [0, 3]
    assert releases(canary.endpoint)[-1] == (3, "rollback", 1, None, None)
    assert AuditEvent.objects.filter(action="endpoint.auto_rollback").count() == 1
    # Evidence about a release that is no longer live changes nothing.
    late = release_rollback_automatic(
        endpoint=canary.endpoint, rule="canary errors", reason="late", evidence={"release": 2}
    )
    assert late is None
    assert Release.objects.filter(endpoint=canary.endpoint).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_rollback_release_is_not_rolled_back_again(canary: Canary) -> None:
    release_rollback_automatic(
        endpoint=canary.endpoint, rule="canary errors", reason="bad canary", evidence={"release": 2}
    )
    rule_create(canary.endpoint, metric="error_rate")
    evaluator = AlertEvaluator()
    now = time.time() + 1
    evaluator.observe(int(now) - 1, {("iris", 1, "primary"): served(100, 100)})
    [alert] = asyncio.run(evaluator.evaluate(now))
    assert (alert.release, alert.action_taken) == (3, "notified")
    assert "itself a rollback" in alert.detail
    assert Release.objects.filter(endpoint=canary.endpoint).count() == 3


# --- end to end: the data plane records a failing canary, the flusher rolls it back --------------------------


def _infer_body() -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.5] * 4}]}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_db_threads")
async def test_a_canary_failing_in_the_data_plane_is_rolled_back_by_the_cluster_evaluator(
    deployed: Deployed, client: httpx.AsyncClient, monkeypatch
) -> None:
    recorder.swap()
    builder = Actor(user=await sync_to_async(User.objects.get)(username="builder"))
    await sync_to_async(release_promote)(
        actor=builder, endpoint=deployed.private, version=deployed.versions[2], canary_percent=1
    )
    await sync_to_async(rule_create)(deployed.private, min_requests=20)
    await sync_to_async(router_get()._refresh_closing, thread_sensitive=True)()
    route = router_get().state.routes["iris"]
    assert route.canary is not None

    def broken(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise RuntimeError("canary is broken")

    monkeypatch.setattr(route.canary.runtime, "run", broken)
    for _ in range(25):
        pinned = await client.post("/v2/models/iris/versions/2/infer", json=_infer_body(), headers=deployed.auth())
        assert pinned.status_code == 500
    assert (
        await client.post("/v2/models/iris/versions/1/infer", json=_infer_body(), headers=deployed.auth())
    ).status_code == 200

    flusher = Flusher(recorder, process="test:alerts")
    now = time.time() + 1
    await flusher.flush(now)  # the second just ended, written for the evaluator
    await flusher.evaluator.tick(now + READ_LAG_SECONDS)  # read once every process has written that second

    live = await sync_to_async(lambda: deployed.private.releases.select_related("primary").order_by("-number")[0])()
    assert (live.number, live.action, live.primary.number, live.canary_id, live.actor_id) == (
        3,
        "rollback",
        1,
        None,
        None,
    )
    alert = await sync_to_async(Alert.objects.get)()
    assert (alert.release, alert.version, alert.role, alert.requests, alert.value) == (2, 2, "canary", 25, 1.0)
    assert alert.action_taken == "rolled_back"
    # The data plane follows: v2 is no longer live on the endpoint.
    await sync_to_async(router_get()._refresh_closing, thread_sensitive=True)()
    gone = await client.post("/v2/models/iris/versions/2/infer", json=_infer_body(), headers=deployed.auth())
    assert gone.status_code == 404


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_db_threads")
async def test_a_drift_rule_rolls_back_a_canary_whose_inputs_drifted(canary: Canary) -> None:
    await sync_to_async(rule_create)(
        canary.endpoint, name="drift", metric="drift_psi", threshold=0.25, min_requests=100
    )
    evaluator = AlertEvaluator()
    now = time.time() + 2
    second = int(now) - 1
    # Too few sampled rows: no verdict, however large the PSI.
    evaluator.observe_drift(second - 1, {("iris", 2): (99, {"x[0]": 0.9})})
    assert await evaluator.evaluate(now - 1) == []
    # The primary drifting under its threshold does not fire; the canary over it does, and is rolled back.
    evaluator.observe_drift(
        second, {("iris", 1): (500, {"x[0]": 0.1}), ("iris", 2): (400, {"x[0]": 0.02, "x[2]": 0.6})}
    )
    [alert] = await evaluator.evaluate(now)
    assert (alert.metric, alert.version, alert.role, alert.value, alert.requests) == (
        "drift_psi",
        2,
        "canary",
        0.6,
        400,
    )
    assert alert.action_taken == "rolled_back"
    assert await sync_to_async(releases)(canary.endpoint) == [
        (1, "create", 1, None, canary.dev.user.pk),
        (2, "canary", 1, 2, canary.dev.user.pk),
        (3, "rollback", 1, None, None),
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_db_threads")
async def test_an_automatic_rollback_keeps_the_shadow_and_its_rule_name_outlives_the_rule(canary: Canary) -> None:
    actor = Actor(user=canary.dev.user)
    await sync_to_async(release_promote)(
        actor=actor,
        endpoint=canary.endpoint,
        version=canary.versions[2],
        canary_percent=10,
        shadow_version=canary.versions[3],
    )
    rule = await sync_to_async(rule_create)(canary.endpoint)
    evaluator = AlertEvaluator()
    now = time.time() + 1
    evaluator.observe(int(now) - 1, canary_window(100, 50))
    [alert] = await evaluator.evaluate(now)
    assert (alert.action_taken, alert.rollback_release) == ("rolled_back", 4)
    assert alert.detail == "Rolled back: the canary v2 is removed; release 4 serves v1 with shadow v3."
    live = await sync_to_async(lambda: canary.endpoint.releases.order_by("-number")[0])()
    assert (live.number, live.primary_id, live.canary_id, live.canary_percent, live.shadow_id) == (
        4,
        canary.versions[1].pk,
        None,
        0,
        canary.versions[3].pk,
    )
    assert (live.actor_id, live.rule_name) == (None, "canary errors")

    # Renamed, then deleted: history still says which rule it was.
    await sync_to_async(AlertRule.objects.filter(pk=rule.pk).update)(name="renamed")
    await sync_to_async(AlertRule.objects.filter(pk=rule.pk).delete)()
    history = await sync_to_async(canary.viewer.token_client().get)("/api/v1/endpoints/iris/releases")
    assert [(r["number"], r["action"], r["actor"], r["by"], r["rule"]) for r in history.json()] == [
        (4, "rollback", None, "automatic (rule canary errors)", "canary errors"),
        (3, "canary", "dev", "dev", None),
        (2, "canary", "dev", "dev", None),
        (1, "create", "dev", "dev", None),
    ]
