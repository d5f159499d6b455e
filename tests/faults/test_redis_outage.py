"""Redis (cache, release stamp, broker) stopped and started again by the test: no write is left half-done.

A promote while Redis is away is committed and answered 201 (the commit is the truth); every web process serves it
within about a second of Redis' return. A job or an upload whose message could not be sent is sent again by the
reaper once the broker is back, and runs. A retried POST with the same Idempotency-Key makes nothing twice. A
rollout goes on to its promote while Redis is away.
"""

from __future__ import annotations

import io
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.utils import timezone
from kombu import Connection

from config.celery_app import app
from deployments.models import Release
from deployments.services import endpoint_create
from registry.choices import JobStatus, VersionStatus
from registry.models import Job, ModelVersion
from registry.services.jobs import JOB_UNCLAIMED_AFTER, jobs_resend_unclaimed
from registry.services.versions import INSPECTION_LOST_AFTER, registered_model_create, versions_inspect_resend
from teams.choices import Role
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version
from tests.faults.redis_server import private_redis
from tests.registry.model_files import onnx_file
from tests.registry.test_worker_kill import celery_broker, database_url, wait_until
from tests.test_scale_out import Web, load, rollout, rollout_outcome, rollout_state, served_version

# A multi-process or fault-injection suite: `make test-heavy`, not `make test` (CI runs both).
pytestmark = pytest.mark.heavy

# This file's private ports (the first free one of each group is used).
WEB_REDIS_PORTS = (56379, 56380, 56381)
BROKER_REDIS_PORTS = (56382, 56383, 56384)


def web_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    """The environment of a web process on the test database and artifacts, with Redis at `redis_url`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "MODELDECK_VAR_DIR", "DJANGO_SETTINGS_MODULE"}
    }
    return env | {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "MODELDECK_VAR_DIR": str(tmp_path),
        "MODELDECK_PROMETHEUS_DIR": str(tmp_path / "prometheus"),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.mark.django_db(transaction=True)  # committed rows: the web processes are other processes
def test_a_promote_while_redis_is_away_is_committed_and_every_web_process_serves_it_when_redis_returns(
    artifact_dir: Path, tmp_path: Path, make_member, team_a
) -> None:
    dev = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    versions = {seed: add_version(model, actor, tmp_path, seed) for seed in (1, 2)}
    endpoint_create(actor=actor, model=model, name="iris", version=versions[1])
    webs: list[Web] = []
    with private_redis(WEB_REDIS_PORTS) as server:
        try:
            env = web_env(tmp_path, server.url())
            webs = [Web("web-1", env), Web("web-2", env)]
            for web in webs:
                web.wait_ready()
            assert [served_version(web, dev.token) for web in webs] == [1, 1]

            server.stop()
            time.sleep(1.0)  # both processes have found the stamp unreadable (and re-read the releases once)
            headers = {"Authorization": f"Bearer {dev.token}", "Idempotency-Key": "promote-v2"}
            answers = []
            for _ in range(2):  # a client that lost the first answer retries with the same key
                promoted = httpx.post(
                    f"{webs[0].url}/api/v1/endpoints/iris/promote", json={"version": 2}, headers=headers, timeout=10
                )
                answers.append((promoted.status_code, promoted.json()))
            assert answers[0][0] == 201, answers[0][1]
            assert answers[1] == answers[0]
            assert list(Release.objects.order_by("number").values_list("number", "primary__number")) == [(1, 1), (2, 2)]
            # The process that made the release follows it at once; the other one learns of it from the stamp.
            wait_until(lambda: served_version(webs[0], dev.token) == 2, 5, "web-1 to serve v2", poll=0.1)
            assert served_version(webs[1], dev.token) == 1

            # Back, and empty (no persistence): web-2 re-reads the releases once it can read the stamp again,
            # whether or not web-1's retried bump has landed yet.
            server.start()
            back = time.monotonic()
            wait_until(lambda: served_version(webs[1], dev.token) == 2, 5, "web-2 to serve v2", poll=0.05)
            took = time.monotonic() - back
            print(f"\nweb-2 served the release made during the outage {took:.2f} s after Redis came back")
        except BaseException:
            for web in webs:
                print(web.dump())
            raise
        finally:
            for web in webs:
                web.kill()


def _run_queued_messages(url: str) -> list[str]:
    """Run every task message on the broker's queue in this process, as a worker would; return the task names."""
    ran = []
    with Connection(url) as conn:
        queue = conn.SimpleQueue("celery")
        while True:
            try:
                message = queue.get(timeout=0.5)
            except queue.Empty:
                break
            args = message.decode()[0]
            app.tasks[message.headers["task"]].apply(args=args)
            message.ack()
            ran.append(message.headers["task"])
        queue.close()
    return ran


@pytest.mark.django_db
def test_jobs_and_uploads_made_while_the_broker_is_away_are_sent_again_and_run_once_it_is_back(
    artifact_dir: Path, tmp_path: Path, make_member, team_a, settings: Any, django_capture_on_commit_callbacks
) -> None:
    dev = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    add_version(model, actor, tmp_path, 1)
    Job.objects.all().delete()  # its automatic benchmark (never sent: no commit here) is not this test's
    settings.MODELDECK_INLINE_INSPECT_MAX_BYTES = 0  # every upload is inspected by a worker
    client = dev.token_client()
    with private_redis(BROKER_REDIS_PORTS) as server:
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url()}
        }
        with celery_broker(server.url()):
            server.stop()
            with django_capture_on_commit_callbacks(execute=True):
                benchmark = client.post("/api/v1/models/alpha/iris/versions/1/benchmarks", format="json")
            assert benchmark.status_code == 202, benchmark.json()
            path = onnx_file(tmp_path / "m2.onnx", seed=2)
            file = io.BytesIO(path.read_bytes())
            file.name = "m2.onnx"
            with django_capture_on_commit_callbacks(execute=True):
                uploaded = client.post("/api/v1/models/alpha/iris/versions", {"file": file}, format="multipart")
            assert uploaded.status_code == 201, uploaded.json()
            job = Job.objects.get()
            version = ModelVersion.objects.get(number=2)
            assert (job.status, job.attempts, version.status) == (JobStatus.QUEUED, 0, VersionStatus.PROCESSING)

            server.start()  # back, with nothing on its queue: both messages were never sent
            assert _run_queued_messages(server.url()) == []
            later = timezone.now() + max(JOB_UNCLAIMED_AFTER, INSPECTION_LOST_AFTER) + timedelta(seconds=1)
            assert jobs_resend_unclaimed(now=later) == [job.pk]
            assert versions_inspect_resend(now=later) == [version.pk]
            assert sorted(_run_queued_messages(server.url())) == [
                "registry.tasks.job_run_task",
                "registry.tasks.model_version_inspect_task",
            ]
    job.refresh_from_db()
    version.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1), job.error
    assert version.status == VersionStatus.READY, version.status_message
    assert [entry["message"] for entry in job.log][1] == "no worker took it yet; sent to the queue again"


@pytest.mark.django_db(transaction=True)
def test_a_rollout_goes_on_while_redis_is_away(artifact_dir: Path, tmp_path: Path, make_member, team_a) -> None:
    """Its state is in the database and the one evaluator reads and writes only the database: with Redis stopped
    halfway, the rollout still reaches its promote, and no client request fails meanwhile."""
    dev = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    versions = {seed: add_version(model, actor, tmp_path, seed) for seed in (1, 2)}
    endpoint_create(actor=actor, model=model, name="iris", version=versions[1])
    auth = {"Authorization": f"Bearer {dev.token}"}
    webs: list[Web] = []
    with private_redis(WEB_REDIS_PORTS) as server:
        try:
            env = web_env(tmp_path, server.url())
            webs = [Web("web-1", env), Web("web-2", env)]
            for web in webs:
                web.wait_ready()
            answers: list[tuple[int, str]] = []
            with load(webs, dev.token, answers):
                started = rollout(webs[0], auth, 2, gates={"min_requests": 10, "p95_ratio": None})
                wait_until(lambda: rollout_state(webs, auth, started)[1] == 2, 30, "the rollout's second step")
                server.stop()
                assert rollout_outcome(webs, auth, started) == "succeeded"
                server.start()
                wait_until(lambda: {served_version(web, dev.token) for web in webs} == {2}, 20, "v2 everywhere")
            assert answers and {status for status, _ in answers} == {200}
            assert Release.objects.select_related("primary").order_by("-number")[0].primary.number == 2
        except BaseException:
            for web in webs:
                print(web.dump())
            raise
        finally:
            for web in webs:
                web.kill()
