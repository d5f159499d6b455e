"""Rollouts: pre-flight, the judge on each gate, steps, promote, rollback, races, manual takeover, the API."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from deployments.choices import RolloutState
from deployments.models import Endpoint, Release, Rollout, RolloutEvaluation
from deployments.rollouts import Traffic, rollout_create, rollout_judge, rollouts_running
from deployments.services import endpoint_create, release_promote, release_rollback
from registry.models import ModelVersion
from teams.choices import Role
from teams.models import AuditEvent
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version

pytestmark = [pytest.mark.usefixtures("artifact_dir")]

GOOD = Traffic(requests=200, errors=1, disagreements=0, p95_ms=10.0)
PRIMARY = Traffic(requests=2000, errors=10, disagreements=0, p95_ms=10.0)
STEPS = [{"percent": 5, "bake_seconds": 300}, {"percent": 25, "bake_seconds": 600}]


@pytest.fixture
def deck(make_member, team_a, tmp_path) -> dict[str, Any]:
    from registry.services.versions import registered_model_create

    dev = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    viewer = make_member(team=team_a, role=Role.VIEWER, username="eve")
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    versions = [add_version(model, actor, tmp_path, seed) for seed in (1, 2, 3)]
    endpoint = endpoint_create(actor=actor, model=model, name="iris-prod", version=versions[0])
    return {"dev": dev, "viewer": viewer, "actor": actor, "model": model, "versions": versions, "endpoint": endpoint}


def start(deck: dict[str, Any], steps: list[dict[str, int]] = STEPS, **kwargs: Any) -> Rollout:
    version = ModelVersion.objects.get(pk=deck["versions"][1].pk)  # as the API reads it
    return rollout_create(actor=deck["actor"], endpoint=deck["endpoint"], version=version, steps=steps, **kwargs)


def live(endpoint: Endpoint) -> Release:
    release = endpoint.releases.order_by("-number").first()
    assert release is not None
    return release


def judge(rollout: Rollout, after: float, canary: Traffic = GOOD, **kwargs: Any) -> Rollout | None:
    fresh = Rollout.objects.get(pk=rollout.pk)
    arguments: dict[str, Any] = {"primary": PRIMARY, "shadow": None, "drift_psi": None, **kwargs}
    return rollout_judge(
        rollout_id=rollout.pk,
        step=fresh.step,
        canary=canary,
        now=fresh.step_started_at + timedelta(seconds=after),
        **arguments,
    )


@pytest.mark.django_db
def test_start_releases_the_first_step_as_a_canary(deck) -> None:
    rollout = start(deck)
    release = live(deck["endpoint"])
    assert (release.action, release.primary.number, release.canary.number, release.canary_percent) == (
        "canary",
        1,
        2,
        5,
    )
    assert release.reason.startswith(f"rollout {rollout.pk} step 1/2: v2 at 5%")
    assert (rollout.state, rollout.step, rollout.gates["error_rate"], rollout.gates["min_requests"]) == (
        "running",
        1,
        0.05,
        100,
    )
    assert [check["gate"] for check in rollout.preflight] == ["parity", "signature", "benchmark_p50_slower"]
    assert rollout.preflight[2]["note"] == "no benchmark"
    assert [r.pk for r in rollouts_running()] == [rollout.pk]
    assert AuditEvent.objects.filter(action="rollout.start", target_id=str(rollout.pk)).exists()


@pytest.mark.django_db
def test_below_the_minimum_nothing_is_judged_and_history_is_written_once(deck) -> None:
    rollout = start(deck)
    bad = Traffic(requests=99, errors=50, disagreements=0, p95_ms=100.0)
    for second in (10, 11, 12):
        assert judge(rollout, second, bad) is None
    rollout.refresh_from_db()
    assert rollout.state == "running"
    assert rollout.evaluations["min_requests"] == {
        "status": "waiting",
        "passed": None,
        "value": 99,
        "threshold": 100,
        "window_seconds": 12.0,
        "requests": 99,
        "note": "",
    }
    assert rollout.evaluations["error_rate"]["status"] == "waiting"
    assert rollout.evaluations["error_rate"]["value"] == pytest.approx(0.5051)
    # Three judgements of the same verdicts: one history row per gate, not one per second.
    assert RolloutEvaluation.objects.filter(rollout=rollout, gate="error_rate").count() == 1
    assert live(deck["endpoint"]).canary_percent == 5


@pytest.mark.django_db
def test_gates_that_hold_move_to_the_next_step_after_the_bake_then_promote(deck) -> None:
    rollout = start(deck)
    assert judge(rollout, 299) is None
    moved = judge(rollout, 300)
    assert moved is not None and (moved.state, moved.step) == ("running", 2)
    release = live(deck["endpoint"])
    assert (release.canary.number, release.canary_percent) == (2, 25)
    assert judge(rollout, 599) is None
    done = judge(rollout, 600)
    assert done is not None and done.state == "succeeded"
    release = live(deck["endpoint"])
    assert (release.action, release.primary.number, release.canary) == ("promote", 2, None)
    assert list(
        AuditEvent.objects.filter(action__startswith="rollout.").order_by("id").values_list("action", flat=True)
    ) == ["rollout.start", "rollout.step", "rollout.succeed"]
    assert rollouts_running() == []


GATE_FAILURES = {
    "error_rate": (
        {"error_rate_relative": None},
        {"canary": Traffic(requests=112, errors=24, disagreements=0, p95_ms=10.0)},
        "canary error rate 0.2143 > 0.05 over 43 s, 112 requests",
    ),
    "error_rate_relative": (
        {"error_rate": None},
        {"canary": Traffic(requests=200, errors=8, disagreements=0, p95_ms=10.0)},
        "canary error rate vs primary 0.04 > 0.02 over 43 s, 200 requests",
    ),
    "p95_ratio": (
        {},
        {"canary": Traffic(requests=200, errors=0, disagreements=0, p95_ms=16.0)},
        "p95 latency ratio to primary 1.6 > 1.5 over 43 s, 200 requests",
    ),
    "disagreement_rate": (
        {},
        {"shadow": Traffic(requests=300, errors=0, disagreements=45, p95_ms=9.0)},
        "disagreement rate 0.15 > 0.1 over 43 s, 300 requests",
    ),
    "drift_psi": ({}, {"drift_psi": 0.41}, "drift PSI 0.41 > 0.25 over 43 s, 200 requests"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("gate", list(GATE_FAILURES))
def test_a_failing_gate_rolls_back_with_its_numbers(deck, gate) -> None:
    gates, traffic, text = GATE_FAILURES[gate]
    rollout = start(deck, gates=gates)
    changed = judge(rollout, 43, **traffic)
    assert changed is not None and changed.state == "rolled_back"
    expected = f"rollout {rollout.pk} step 1: {text}"
    assert changed.outcome == expected
    release = live(deck["endpoint"])
    assert (release.action, release.primary.number, release.canary, release.canary_percent) == ("rollback", 1, None, 0)
    assert release.reason == expected
    audit = AuditEvent.objects.get(action="rollout.rollback")
    assert audit.data["outcome"] == expected and audit.actor is None
    row = RolloutEvaluation.objects.get(rollout=rollout, gate=gate)
    assert (row.status, row.passed, row.window_seconds) == ("failed", False, 43.0)
    assert judge(rollout, 44, **traffic) is None  # no longer running: nothing more happens


@pytest.mark.django_db
def test_a_gate_turned_off_does_not_judge(deck) -> None:
    rollout = start(deck, gates={"drift_psi": None})
    assert "drift_psi" not in (judge(rollout, 300, drift_psi=0.9) or rollout).evaluations
    assert Rollout.objects.get(pk=rollout.pk).step == 2


@pytest.mark.django_db
def test_a_manual_release_aborts_the_rollout_and_is_audited(deck) -> None:
    rollout = start(deck)
    release = release_promote(actor=deck["actor"], endpoint=deck["endpoint"], version=deck["versions"][2])
    rollout.refresh_from_db()
    assert (rollout.state, rollout.outcome) == ("aborted", f"manual release #{release.number}")
    audit = AuditEvent.objects.get(action="rollout.abort")
    assert (audit.actor, audit.data["release"]) == (deck["dev"].user, release.number)
    assert judge(rollout, 400) is None
    assert live(deck["endpoint"]).number == release.number  # the judge made no release after it


@pytest.mark.django_db
def test_a_manual_rollback_aborts_the_rollout(deck) -> None:
    rollout = start(deck)
    release = release_rollback(actor=deck["actor"], endpoint=deck["endpoint"], reason="no")
    rollout.refresh_from_db()
    assert (rollout.state, rollout.outcome) == ("aborted", f"manual release #{release.number}")


@pytest.mark.django_db(transaction=True)
def test_two_judges_racing_apply_the_step_once(deck) -> None:
    rollout = start(deck)
    barrier = threading.Barrier(2)
    results: list[Rollout | None] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(judge(rollout, 300))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(result is None for result in results) == [False, True]
    assert Rollout.objects.get(pk=rollout.pk).step == 2
    assert deck["endpoint"].releases.filter(canary_percent=25).count() == 1
    assert AuditEvent.objects.filter(action="rollout.step").count() == 1


@pytest.mark.django_db
def test_preflight_refuses_failed_parity_a_signature_change_and_a_slower_benchmark(deck) -> None:
    from common.errors import ApplicationError

    version = deck["versions"][1]
    ModelVersion.objects.filter(pk=version.pk).update(parity={"passed": False, "reason": "max abs diff 0.3"})
    with pytest.raises(ApplicationError) as refused:
        start(deck)
    assert (refused.value.code, refused.value.detail["checks"][0]["passed"]) == ("preflight_failed", False)
    ModelVersion.objects.filter(pk=version.pk).update(parity={"passed": True})
    signature = dict(version.signature)
    signature["inputs"] = [{**signature["inputs"][0], "name": "renamed"}]
    ModelVersion.objects.filter(pk=version.pk).update(signature=signature)
    with pytest.raises(ApplicationError) as refused:
        start(deck)
    assert refused.value.code == "preflight_failed" and "signature" in refused.value.message
    ModelVersion.objects.filter(pk=version.pk).update(signature=deck["versions"][0].signature)
    ModelVersion.objects.filter(pk=deck["versions"][0].pk).update(
        benchmark={"batches": [{"batch_size": 1, "p50_ms": 1.0}]}
    )
    ModelVersion.objects.filter(pk=version.pk).update(benchmark={"batches": [{"batch_size": 1, "p50_ms": 1.3}]})
    with pytest.raises(ApplicationError) as refused:
        start(deck)
    assert refused.value.code == "preflight_failed" and "benchmark" in refused.value.message
    assert not Rollout.objects.exists() and live(deck["endpoint"]).number == 1
    rollout = start(deck, gates={"benchmark_p50_slower": 0.5})
    assert rollout.preflight[2]["value"] == pytest.approx(0.3)
