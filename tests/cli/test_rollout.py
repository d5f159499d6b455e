"""`modeldeck rollout [--wait]` and `rollout-status` against a live server, the judge driven by the test."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from deployments.models import Rollout
from deployments.rollouts import Traffic, rollout_judge
from deployments.services import endpoint_create
from modeldeck.client import Client
from modeldeck.errors import EXIT_ABORTED, EXIT_ROLLED_BACK
from modeldeck.resources import Rollout as RolloutResource
from registry.services.versions import registered_model_create
from teams.permissions import Actor
from tests.cli.conftest import CLI_TIMEOUT, MODELDECK, Cli
from tests.deployments.test_endpoint_apis import add_version

pytestmark = pytest.mark.django_db(transaction=True)

GOOD = Traffic(requests=500, errors=0, disagreements=0, p95_ms=5.0)
PRIMARY = Traffic(requests=5000, errors=0, disagreements=0, p95_ms=5.0)


@pytest.fixture
def endpoint(cli: Cli, dev, tmp_path):
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=dev.team, name="iris")
    versions = [add_version(model, actor, tmp_path, seed) for seed in (1, 2)]
    return endpoint_create(actor=actor, model=model, name="iris-prod", version=versions[0])


def judge(rollout: Rollout, canary: Traffic = GOOD) -> Rollout | None:
    rollout.refresh_from_db()
    return rollout_judge(
        rollout_id=rollout.pk,
        step=rollout.step,
        canary=canary,
        primary=PRIMARY,
        shadow=None,
        drift_psi=None,
        now=rollout.step_started_at,
    )


def waiting(cli: Cli, *args: str) -> tuple[subprocess.Popen[str], Rollout]:
    process = subprocess.Popen(
        [str(MODELDECK), "rollout", "iris-prod", "2", *args, "--wait", "--json"],
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while (rollout := Rollout.objects.first()) is None:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return process, rollout


def test_rollout_prints_it_and_rollout_status_shows_the_gates(cli: Cli, endpoint) -> None:
    started = cli(
        "rollout", "iris-prod", "2", "--steps", "5,25", "--bake", "1m,2m", "--gate", "drift_psi=off", "--json"
    )
    assert started.code == 0, started.stderr
    rollout = started.json["rollout"]
    assert set(rollout) == RolloutResource.__required_keys__ | {"history"}
    assert (rollout["state"], rollout["percent"], rollout["gates"]["drift_psi"]) == ("running", 5, None)
    assert rollout["steps"] == [{"percent": 5, "bake_seconds": 60}, {"percent": 25, "bake_seconds": 120}]
    judge(Rollout.objects.get(), Traffic(requests=10, errors=0, disagreements=0, p95_ms=5.0))
    status = cli("rollout-status", "iris-prod")
    assert status.code == 0, status.stderr
    assert "step 1/2 at 5%" in status.stdout and "canary requests: 10 (threshold 100) waiting" in status.stdout
    second = cli("rollout", "iris-prod", "2", "--json")
    assert (second.code, second.json["error"]["code"]) == (5, "rollout_active")
    assert cli("rollout", "iris-prod", "2", "--gate", "speed=1").code == 5
    assert cli("rollout", "iris-prod", "2", "--bake", "soon").code == 2


def test_wait_follows_each_step_and_exits_0_when_promoted(cli: Cli, endpoint) -> None:
    process, rollout = waiting(cli, "--steps", "10,50", "--bake", "0")
    assert judge(rollout) is not None
    time.sleep(2.5)  # the CLI reads the rollout every 2 s: let it see step 2 before the promote
    assert judge(rollout) is not None
    stdout, stderr = process.communicate(timeout=CLI_TIMEOUT)
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["rollout"]["state"] == "succeeded"
    assert "step 1/2 at 10%" in stderr and "step 2/2 at 50%" in stderr and "succeeded" in stderr
    assert endpoint.releases.order_by("-number").first().primary.number == 2


def test_wait_exits_with_its_own_code_on_an_automatic_rollback(cli: Cli, endpoint) -> None:
    process, rollout = waiting(cli, "--steps", "10", "--bake", "5m")
    assert judge(rollout, Traffic(requests=200, errors=60, disagreements=0, p95_ms=5.0)) is not None
    stdout, stderr = process.communicate(timeout=CLI_TIMEOUT)
    assert process.returncode == EXIT_ROLLED_BACK, stderr
    document = json.loads(stdout)
    assert document["rollout"]["state"] == "rolled_back"
    assert document["error"]["code"] == "rollout_rolled_back"
    assert "canary error rate 0.3 > 0.05" in document["error"]["message"]


def test_wait_exits_with_another_code_when_aborted(cli: Cli, endpoint) -> None:
    process, _ = waiting(cli, "--steps", "10", "--bake", "5m")
    status = cli("rollout-status", "iris-prod", "--json")  # readable while another run waits
    rollout_id = status.json["rollout"]["id"]
    with Client(cli.url, cli.token) as client:
        client.rollout_action("iris-prod", rollout_id, "abort", reason="not today")
    _, stderr = process.communicate(timeout=CLI_TIMEOUT)
    assert process.returncode == EXIT_ABORTED, stderr
