"""One evaluator for the cluster: every process's seconds in the database, judged once by the lease holder."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from monitoring.alerts.cluster import READ_LAG_SECONDS, ClusterEvaluator
from monitoring.models import Alert, EvaluatorLease, MetricSecond
from monitoring.selectors import metric_seconds_between
from monitoring.services import evaluator_lease_release, evaluator_lease_take, metric_seconds_save
from tests.monitoring import test_alerts
from tests.monitoring.test_alerts import Canary, releases, rule_create, served

# The alert tests' endpoint with a 10 % canary, and the closing of asgiref's database thread after async tests.
canary = test_alerts.canary
_close_db_threads = test_alerts._close_db_threads
pytestmark = pytest.mark.usefixtures("_close_db_threads")


def write(process: str, second: int, count: int, errors: int, version: int = 2, role: str = "canary") -> None:
    metric_seconds_save(seconds={(("iris", version, role), second): served(count, errors)}, process=process)


@pytest.mark.django_db
def test_the_lease_goes_to_one_holder_and_passes_on_when_it_lapses() -> None:
    now = timezone.now()
    assert evaluator_lease_take(name="evaluator", holder="web-a", seconds=5, now=now)
    assert not evaluator_lease_take(name="evaluator", holder="web-b", seconds=5, now=now)
    assert evaluator_lease_take(name="evaluator", holder="web-a", seconds=5, now=now + timedelta(seconds=3))  # renewed
    assert not evaluator_lease_take(name="evaluator", holder="web-b", seconds=5, now=now + timedelta(seconds=7))
    assert evaluator_lease_take(name="evaluator", holder="web-b", seconds=5, now=now + timedelta(seconds=9))  # lapsed
    assert not evaluator_lease_take(name="evaluator", holder="web-a", seconds=5, now=now + timedelta(seconds=9))
    evaluator_lease_release(name="evaluator", holder="web-b")
    assert evaluator_lease_take(name="evaluator", holder="web-a", seconds=5)
    assert EvaluatorLease.objects.get().holder == "web-a"


@pytest.mark.django_db
def test_seconds_of_several_processes_are_summed(canary: Canary) -> None:
    write("web-a", 100, 30, 2)
    write("web-b", 100, 20, 3)
    write("web-b", 101, 10, 0)
    write("web-b", 101, 12, 1)  # the same second written again (a final flush) replaces, never adds
    seconds = metric_seconds_between(after=99, upto=101)
    assert (seconds[100][("iris", 2, "canary")].count, seconds[100][("iris", 2, "canary")].errors) == (50, 5)
    assert (seconds[101][("iris", 2, "canary")].count, seconds[101][("iris", 2, "canary")].errors) == (12, 1)
    assert metric_seconds_between(after=101, upto=200) == {}


@pytest.mark.django_db(transaction=True)
async def test_a_rule_judges_every_process_s_traffic_once(canary: Canary) -> None:
    """30 canary requests in each of two processes: neither alone reaches the rule's 50, together they do, and the
    rule fires once, in the lease holder, the same as if one process had served all 60."""
    await sync_to_async(rule_create)(canary.endpoint)
    a, b = ClusterEvaluator("web-a:1"), ClusterEvaluator("web-b:2")
    now = time.time() + 3  # after the canary release went live
    second = int(now) - READ_LAG_SECONDS
    await sync_to_async(write)("web-a:1", second, 30, 6)
    await sync_to_async(write)("web-b:2", second, 30, 6)
    await a.tick(now)
    await b.tick(now)
    assert (a.leading, b.leading) == (True, False)
    [alert] = await sync_to_async(lambda: list(Alert.objects.all()))()
    assert (alert.version, alert.requests, alert.value, alert.action_taken) == (2, 60, 0.2, "rolled_back")
    assert [r[1] for r in await sync_to_async(releases)(canary.endpoint)] == ["create", "canary", "rollback"]

    # The holder stops: the other takes the lease at its next second, reads back what its rules need, and judges.
    await a.stop()
    await b.tick(now + 1)
    assert b.leading
    assert b.alerts.horizon == 60


@pytest.mark.django_db(transaction=True)
async def test_the_holder_reads_late_seconds_once_and_only_new_ones(canary: Canary) -> None:
    await sync_to_async(rule_create)(canary.endpoint, min_requests=100)
    evaluator = ClusterEvaluator("web-a:1")
    now = time.time() + 3
    second = int(now) - READ_LAG_SECONDS
    await sync_to_async(write)("web-a:1", second, 60, 0)
    await evaluator.tick(now)
    await sync_to_async(write)("web-b:2", second + 1, 60, 30)  # 120 requests, 30 errors: 25 % over the window
    await evaluator.tick(now + 1)
    [alert] = await sync_to_async(lambda: list(Alert.objects.all()))()
    assert (alert.requests, alert.value) == (120, 0.25)
    await evaluator.tick(now + 2)  # nothing new: nothing counted twice, nothing fired twice
    assert await sync_to_async(Alert.objects.count)() == 1
    assert await sync_to_async(MetricSecond.objects.count)() == 2


async def _rollout_started(canary: Canary, gates: dict | None = None):
    from deployments.rollouts import rollout_create
    from teams.permissions import Actor

    steps = [{"percent": 5, "bake_seconds": 2}, {"percent": 50, "bake_seconds": 2}]
    return await sync_to_async(rollout_create)(
        actor=Actor(user=canary.dev.user),
        endpoint=canary.endpoint,
        version=canary.versions[2],
        steps=steps,
        gates={"min_requests": 20, **(gates or {})},
    )


async def _serve(seconds: range, canary_errors: int, processes: tuple[str, ...] = ("web-a:1", "web-b:2")) -> None:
    """Each process answers 15 canary requests (some of them 5xx) and 100 primary ones a second."""
    for second in seconds:
        for process in processes:
            await sync_to_async(write)(process, second, 15, canary_errors)
            await sync_to_async(write)(process, second, 100, 0, version=1, role="primary")


@pytest.mark.django_db(transaction=True)
async def test_the_evaluator_takes_a_healthy_rollout_to_a_promote(canary: Canary) -> None:
    from deployments.models import Rollout

    rollout = await _rollout_started(canary)
    a, b = ClusterEvaluator("web-a:1"), ClusterEvaluator("web-b:2")
    start = int(rollout.step_started_at.timestamp())
    await _serve(range(start, start + 4), canary_errors=0)
    # Read 2 s behind: at start + 5 the seconds up to start + 3 are in, the 2 s bake is over, 120 canary requests.
    for evaluator in (a, b):
        await evaluator.tick(start + 5)
    stepped = await sync_to_async(Rollout.objects.get)(pk=rollout.pk)
    assert (stepped.state, stepped.step, stepped.evaluations["min_requests"]["value"]) == ("running", 2, 120)
    second_start = int(stepped.step_started_at.timestamp())
    await _serve(range(second_start, second_start + 4), canary_errors=0)
    await a.tick(second_start + 5)
    done = await sync_to_async(Rollout.objects.get)(pk=rollout.pk)
    assert done.state == "succeeded"
    last = (await sync_to_async(releases)(canary.endpoint))[-1]
    assert (last[2], last[3]) == (2, None)  # v2 is the primary, no canary left


@pytest.mark.django_db(transaction=True)
async def test_the_evaluator_rolls_a_failing_rollout_back_with_its_numbers(canary: Canary) -> None:
    from deployments.models import Rollout

    rollout = await _rollout_started(canary)
    evaluator = ClusterEvaluator("web-a:1")
    start = int(rollout.step_started_at.timestamp())
    # 15 canary requests a second from each process, 3 of them 500: 20 % errors; neither process alone has 20 in
    # its first second, together they do.
    await _serve(range(start, start + 1), canary_errors=3)
    await evaluator.tick(start + 1 + READ_LAG_SECONDS)
    failed = await sync_to_async(Rollout.objects.get)(pk=rollout.pk)
    assert failed.state == "rolled_back", failed.evaluations
    assert "0.2" in failed.outcome and "30 requests" in failed.outcome, failed.outcome
    last = (await sync_to_async(releases)(canary.endpoint))[-1]
    assert (last[2], last[3]) == (1, None)  # the canary removed, v1 serves everything


@pytest.mark.django_db(transaction=True)
async def test_a_rule_made_after_its_traffic_was_read_still_judges_it(canary: Canary, monkeypatch) -> None:
    monkeypatch.setattr("monitoring.alerts.evaluation.RULES_REFRESH_SECONDS", 0.0)
    evaluator = ClusterEvaluator("web-a:1")
    now = time.time() + 3
    second = int(now) - READ_LAG_SECONDS
    await sync_to_async(write)("web-a:1", second, 30, 6)
    await sync_to_async(write)("web-b:2", second, 30, 6)
    await evaluator.tick(now)  # read while no rule watched the endpoint: dropped
    await sync_to_async(rule_create)(canary.endpoint)
    await evaluator.tick(now + 1)  # the new rule's window is read again
    [alert] = await sync_to_async(lambda: list(Alert.objects.all()))()
    assert (alert.requests, alert.value) == (60, 0.2)
