"""docs/example_pipeline.sh end to end against a live server: train, push, parity, staging, smoke test, production."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from deployments.models import Endpoint
from registry.services.parity import TOLERANCES
from teams.choices import Role
from tests.cli.conftest import MODELDECK, Cli

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "example_pipeline.sh"


def run_pipeline(cli: Cli, token: str) -> subprocess.CompletedProcess[str]:
    env = cli.env(
        MODELDECK_TOKEN=token,
        MODEL="alpha/iris",
        MODELDECK=str(MODELDECK),
        PYTHON=sys.executable,
        CI_PIPELINE_ID="42",
    )
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_example_pipeline_stops_on_a_parity_failure_and_otherwise_reaches_production(
    cli: Cli, make_member, team_a, monkeypatch
) -> None:
    # Production is protected, so this pipeline runs with an admin's token.
    admin = make_member(team=team_a, role=Role.ADMIN, username="releaser")

    with monkeypatch.context() as patch:
        # The server runs in this process: a float32 tolerance below zero, which no conversion can meet.
        patch.setitem(TOLERANCES, "none", dataclasses.replace(TOLERANCES["none"], max_abs=-1.0, max_rel=0.0))
        failed = run_pipeline(cli, admin.token)
    assert failed.returncode == 6, failed.stdout + failed.stderr
    assert "PARITY FAILED" in failed.stderr
    assert "== 3. deploy" not in failed.stdout
    assert not Endpoint.objects.exists()

    done = run_pipeline(cli, admin.token)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "uploaded v3, converted to ONNX as v4 (parity passed)" in done.stdout
    assert "staging v4 answers [0, 1, 2], as the trained model does" in done.stdout
    staging, production = Endpoint.objects.get(name="iris-staging"), Endpoint.objects.get(name="iris-prod")
    assert staging.releases.get().primary.number == 4
    assert production.protected
    release = production.releases.get()
    assert (release.primary.number, release.actor, release.reason[:14]) == (4, admin.user, "pipeline 42 (2")
