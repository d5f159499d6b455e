"""Schemathesis over the OpenAPI schema against the live application: no 500, and every answer as the schema says.

The whole ASGI application runs under a real uvicorn (tests/asgi_server.py); the schemathesis CLI generates requests
from /api/schema/ as a team admin with a Bearer token, deterministic, a bounded number per operation.
Path parameters are drawn mostly from objects that exist, the caller's team's and another team's, so the generated
bodies reach the services behind the 404s; the rest stay random.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone

from deployments.models import Endpoint
from deployments.services import endpoint_create
from monitoring.alerts.rules import alert_rule_create
from monitoring.models import Alert, AlertRule, DriftWindow, MetricMinute
from monitoring.recorder import LATENCY_BOUNDS
from registry.services.benchmarks import version_benchmark_request
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from teams.services import api_token_create
from tests.asgi_server import asgi_server
from tests.deployments.test_endpoint_apis import add_version

pytestmark = [pytest.mark.heavy, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("artifact_dir")]

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"
EXAMPLES_PER_OPERATION = 10
# Far above what the run takes (about a minute on 2 cores): only a hung server gets near it.
RUN_TIMEOUT_SECONDS = 300


def _config(path: Path, values: dict[str, list[str | int]]) -> Path:
    """Write the run's schemathesis.toml: each path parameter drawn from `values` 9 times in 10."""
    # Deterministic generation (Hypothesis derandomized, no example database): each run sends the same requests.
    lines = ["[generation]", f"max-examples = {EXAMPLES_PER_OPERATION}", "deterministic = true"]
    lines += ['database = "none"', ""]
    for name, entries in values.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(entries)}", ""]
    lines.append("[parameters]")
    lines += [f'"path.{name}" = {{ dictionary = "{name}", probability = 0.9 }}' for name in values]
    path.write_text("\n".join(lines) + "\n")
    return path


def _history(endpoint: Endpoint, rule: AlertRule) -> None:
    """A minute of traffic (some slower than the last latency bound), a drift window and an alert that fired."""
    now = timezone.now()
    buckets = [0] * (len(LATENCY_BOUNDS) + 1)
    buckets[0], buckets[-1] = 8, 2
    MetricMinute.objects.create(
        endpoint=endpoint,
        version=1,
        role="primary",
        minute=now.replace(second=0, microsecond=0),
        process="web:1",
        count=10,
        errors=1,
        disagreements=0,
        latency_sum=0.5,
        rows=10,
        latency_buckets=buckets,
        codes={"200": 9, "500": 1},
    )
    DriftWindow.objects.create(endpoint=endpoint, version=1, ended_at=now, process="web:1", rows=100, psi={"x[0]": 0.3})
    Alert.objects.create(
        rule=rule,
        rule_name=rule.name,
        endpoint=endpoint,
        release=1,
        version=1,
        role="primary",
        metric=rule.metric,
        value=0.1,
        threshold=rule.threshold,
        window_seconds=rule.window_seconds,
        requests=10,
    )


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    make_member, team_a, team_b, tmp_path, monkeypatch
) -> None:
    # Uploads, conversions and benchmarks queue worker jobs: nothing runs them here, and nothing reaches a broker.
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda *args: None)
    monkeypatch.setattr("registry.tasks.model_version_inspect_task.delay", lambda *args: None)
    fuzzer = make_member(team=team_a, role=Role.ADMIN, username="fuzzer")
    spare = make_member(team=team_a, role=Role.DEVELOPER, username="spare")
    outsider = make_member(team=team_b, role=Role.ADMIN, username="outsider")
    # Both teams name their model "iris", so any team drawn with it names a model that exists.
    objects: dict[str, list[str | int]] = {"team": [], "model": ["iris"], "number": [1, 2], "name": []}
    objects.update(username=["spare", "outsider"], token_id=[], job_id=[], pk=[])
    for member, endpoint_name in ((fuzzer, "iris"), (outsider, "secret")):
        actor = Actor(user=member.user)
        model = registered_model_create(actor=actor, team=member.team, name="iris")
        versions = [add_version(model, actor, tmp_path, seed) for seed in (1, 2)]
        endpoint = endpoint_create(actor=actor, model=model, name=endpoint_name, version=versions[0])
        rule = alert_rule_create(actor=actor, endpoint=endpoint, name="errors", metric="error_rate", threshold=0.5)
        _history(endpoint, rule)
        job = version_benchmark_request(actor=actor, version=versions[0])
        # Tokens to revoke that are not the fuzzer's: revoking its own would leave the rest of the run unauthenticated.
        owner = spare if member is fuzzer else outsider
        token = api_token_create(actor=Actor(user=owner.user), team=member.team, name="spare", role=Role.VIEWER).token
        objects["team"].append(member.team.slug)
        objects["name"].append(endpoint_name)
        objects["token_id"].append(token.pk)
        objects["job_id"].append(job.pk)
        objects["pk"].append(rule.pk)
    config = _config(tmp_path / "schemathesis.toml", objects)

    with asgi_server("/v2/health/live") as url:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(config),
                "run",
                f"{url}/api/schema/",
                "--checks",
                CHECKS,
                "--phases",
                "examples,coverage,fuzzing",
                "--header",
                f"Authorization: Bearer {fuzzer.token}",
                "--workers",
                "1",
                "--no-color",
                "--request-timeout",
                "60",
                # Hypothesis' health checks time data generation: a busy 2-core machine must not fail the run.
                "--suppress-health-check",
                "all",
            ],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
            cwd=tmp_path,
        )
    assert run.returncode == 0, run.stdout + run.stderr
