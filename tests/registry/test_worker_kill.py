"""A worker SIGKILLed in the middle of a job, with a real Redis broker, real Celery workers and PostgreSQL.

The job must not stay `running` forever: the reaper queues it again, a fresh worker finishes it, and the message the
dead worker never acknowledged (acks_late) is delivered again without the job running twice or a second version
appearing. Nothing is mocked between the broker, the worker processes and the database.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import Connection

from config.celery_app import app
from registry.choices import JobStatus
from registry.formats.base import Recipe
from registry.models import Job, ModelVersion
from registry.services.conversions import version_convert_request
from registry.services.jobs import JOB_LOST_AFTER, jobs_reap
from registry.services.versions import Upload, model_version_create, model_version_inspect, registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.registry.conftest import stored_files
from tests.registry.model_files import keras_file
from tests.teams.factories import create_membership
from tests.test_stack_smoke import Output, alive

# A multi-process or fault-injection suite: `make test-heavy`, not `make test` (CI runs both).
pytestmark = pytest.mark.heavy

ROOT = Path(__file__).resolve().parents[2]
BROKER_DB = 14  # a Redis database for this test alone: flushed before and after, so no stale message can run
QUEUE = "celery"  # where job_run_task goes (no routing)
TASK = "registry.tasks.job_run_task"
RECEIVED = re.compile(rf"Task {re.escape(TASK)}\[([0-9a-f-]+)\] received")
SUCCEEDED = re.compile(rf"Task {re.escape(TASK)}\[([0-9a-f-]+)\] succeeded in ([0-9.]+)s")


class Worker:
    """A real `celery worker` in a process group of its own: the main process and its pool children."""

    def __init__(self, name: str, env: dict[str, str], concurrency: int) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "config", "worker", "-l", "INFO"),
                *("--concurrency", str(concurrency), "-n", f"{name}@%h", "--without-mingle", "--without-gossip"),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # pgid == pid: one killpg reaches every process of this worker
        )
        self.output = Output(self.process)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 90) -> None:
        self.output.wait_for(rf"{re.escape(self.name)}@\S+ ready\.", timeout)

    def tasks(self, pattern: re.Pattern[str]) -> dict[str, str]:
        """Task id -> the pattern's second group (the run time for SUCCEEDED), from the worker's log."""
        return {
            m.group(1): m.group(m.lastindex or 1) for line in list(self.output.lines) if (m := pattern.search(line))
        }

    def kill(self) -> None:
        """SIGKILL the whole group, as the OOM killer or a node failure would; nothing gets to clean up."""
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def dump(self) -> str:
        return f"----- {self.name} (pid {self.pid}) -----\n" + "\n".join(self.output.lines[-150:])


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue  # it ended while we looked
        if int(group) == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def wait_until(condition: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)
    return result


def database_url() -> str:
    """This test's database (pytest-django's test_<NAME>) as a URL the worker processes can read."""
    db = connection.settings_dict
    user = urllib.parse.quote(db["USER"] or "", safe="")
    password = urllib.parse.quote(db["PASSWORD"] or "", safe="")
    credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{credentials}{host}{port}/{urllib.parse.quote(db['NAME'], safe='')}"


def worker_setup(tmp_path: Path, broker_db: int, **extra: str) -> tuple[str, redis.Redis, dict[str, str]]:
    """Flush a Redis database of the test's own and build the environment of worker processes that use it.

    The workers see the test database and, through MODELDECK_VAR_DIR, the test's artifact folder.
    """
    broker_url = urllib.parse.urlsplit(settings.REDIS_URL)._replace(path=f"/{broker_db}").geturl()
    broker = redis.Redis.from_url(broker_url)
    broker.flushdb()
    (tmp_path / "worker-tmp").mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "MODELDECK_VAR_DIR", "DJANGO_SETTINGS_MODULE"}
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
        "REDIS_URL": broker_url,
        "CELERY_BROKER_URL": broker_url,
        "MODELDECK_VAR_DIR": str(tmp_path),
        "TMPDIR": str(tmp_path / "worker-tmp"),
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **extra,
    }
    return broker_url, broker, env


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app (what job_run_task.delay publishes with) at another broker, then back.

    The app caches its connection and producer pools on first use, so they are set aside with the URL.
    """
    saved_url, saved_pool, saved_producers = app.conf.broker_url, app._pool, app.amqp._producer_pool
    app.conf.broker_url, app._pool, app.amqp._producer_pool = url, None, None
    try:
        yield
    finally:
        if app.amqp._producer_pool is not None:
            app.amqp._producer_pool.force_close_all()
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_url, app._pool, app.amqp._producer_pool = saved_url, saved_pool, saved_producers


def unacked_messages(broker: redis.Redis) -> list[dict[str, Any]]:
    """Messages a Redis consumer took but never acknowledged (kombu keeps them in the `unacked` hash)."""
    return [json.loads(raw)[0] for raw in broker.hvals("unacked")]


def queued_messages(broker: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in broker.lrange(QUEUE, 0, -1)]


def job_messages(messages: list[dict[str, Any]], job: Job) -> list[str]:
    """The task ids of the messages that would run this job."""
    headers = [message["headers"] for message in messages]
    return [h["id"] for h in headers if h["task"] == TASK and h["argsrepr"] == f"({job.pk},)"]


def redeliver_unacked(url: str) -> None:
    """Put every unacknowledged message back on its queue now, with kombu's own visibility-timeout sweep.

    A live worker runs this sweep by itself, but only once a message is visibility_timeout old: an hour by
    default (CELERY_BROKER_TRANSPORT_OPTIONS sets none), far too long for a test. A zero timeout here makes the
    redelivery that production would see an hour after the kill happen at once.
    """
    with Connection(url, transport_options={"visibility_timeout": 0}) as conn:
        conn.default_channel.qos.restore_visible(interval=1)


def job_log(job: Job) -> list[str]:
    return [entry["message"] for entry in job.log]


@pytest.mark.django_db(transaction=True)  # committed rows: the workers are other processes
def test_a_worker_killed_mid_job_leaves_a_job_that_is_retried_once_and_never_run_twice(
    artifact_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker_url, broker, env = worker_setup(tmp_path, BROKER_DB)
    assert artifact_dir == tmp_path / "artifacts"
    workers: list[Worker] = []
    started = time.monotonic()
    try:
        first = Worker("kill-test-1", env, concurrency=1)
        workers.append(first)

        # Meanwhile, a ready Keras version, inspected here as the inspection task would (no broker involved yet).
        monkeypatch.setattr("registry.tasks.model_version_inspect_task.delay", lambda version_id: None)
        membership = create_membership(role=Role.DEVELOPER)
        actor = Actor(user=membership.user)
        model = registered_model_create(actor=actor, team=membership.team, name="iris")
        path = keras_file(tmp_path / "iris.keras")
        upload = Upload(path, "iris.keras", hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
        created = model_version_create(actor=actor, model=model, upload=upload)
        inspected = model_version_inspect(version_id=created.pk)
        assert inspected is not None and inspected.status == "ready", inspected and inspected.status_message
        version = inspected
        first.wait_ready()

        with celery_broker(broker_url):
            # 1. The first worker takes the conversion, and is SIGKILLed (main process and pool child) mid-job:
            #    after the claim and the first progress step, while it imports TensorFlow to convert.
            job = version_convert_request(actor=actor, version=version, recipe=Recipe(target="onnx"))
            running = wait_until(
                lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, progress__gte=5).first(),
                timeout=90,
                what="the first worker to start converting",
            )
            assert running.worker.startswith("kill-test-1@") and running.attempts == 1
            members = group_members(first.pid)
            pool_children = [pid for pid in members if pid != first.pid]
            assert first.pid in members and pool_children, f"no pool child in the worker's group: {members}"
            first.kill()
            wait_until(lambda: group_members(first.pid) == [], timeout=15, what="the killed worker's group to go")
            assert [pid for pid in [first.pid, *pool_children] if alive(pid)] == [], "an orphan survived the kill"
            killed_at = time.monotonic()

            # 2. Nothing finishes it by itself: it is still running, with a heartbeat too fresh to reap yet...
            job.refresh_from_db()
            assert job.status == JobStatus.RUNNING and job.attempts == 1
            assert jobs_reap() == []
            # ...and its message is neither lost nor acknowledged: Redis holds it as unacked (acks_late).
            [message] = unacked_messages(broker)
            assert message["headers"]["task"] == TASK
            assert message["headers"]["argsrepr"] == f"({job.pk},)"
            original_task = message["headers"]["id"]

            # 3. Both ways back into the queue at once: the visibility-timeout redelivery of that message, and the
            #    reaper (beat runs it every 30 s) once the heartbeat is JOB_LOST_AFTER old.
            redeliver_unacked(broker_url)
            assert broker.hlen("unacked") == 0
            assert jobs_reap(now=timezone.now() + JOB_LOST_AFTER + timedelta(seconds=5)) == [job.pk]
            job.refresh_from_db()
            assert job.status == JobStatus.QUEUED
            deliveries = job_messages(queued_messages(broker), job)
            assert len(deliveries) == 2 and original_task in deliveries, "expected the redelivery and the reaper's"

            # 4. A fresh worker with two pool processes gets both messages together: the conditional claim lets
            #    exactly one of them run the job; the other is a no-op.
            second = Worker("kill-test-2", env, concurrency=2)
            workers.append(second)
            final = wait_until(
                lambda: Job.objects.filter(pk=job.pk, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).first(),
                timeout=180,
                what="the job to end after the retry",
                poll=0.2,
            )
            recovered_in = time.monotonic() - killed_at
            assert final.status == JobStatus.SUCCEEDED, f"{final.error}\n{job_log(final)}"
            # Both deliveries reached the second worker and ended (one ran the job, one found it claimed) and
            # were acknowledged: no message is left that could run this job again. (The converted version may
            # queue jobs of its own, a benchmark, which are not this job's business.)
            wait_until(
                lambda: set(deliveries) <= set(second.tasks(SUCCEEDED)), timeout=30, what="both deliveries to end"
            )
            assert set(deliveries) <= set(second.tasks(RECEIVED))
            wait_until(
                lambda: job_messages(unacked_messages(broker) + queued_messages(broker), job) == [],
                timeout=10,
                what="both deliveries to be acknowledged",
            )

        # Two attempts, one per worker, the loss between them in the log; never a second claim of attempt 2.
        assert final.attempts == 2
        assert final.worker.startswith("kill-test-2@")
        log = job_log(final)
        starts = [m for m in log if m.startswith("started on ")]
        assert len(starts) == 2, log
        assert starts[0].startswith("started on kill-test-1@") and starts[0].endswith("(attempt 1)")
        assert starts[1].startswith("started on kill-test-2@") and starts[1].endswith("(attempt 2)")
        worker_1 = starts[0].removeprefix("started on ").removesuffix(" (attempt 1)")
        lost = log.index(f"worker {worker_1} stopped sending heartbeats (attempt 1); queued again")
        assert log.index(starts[0]) < lost < log.index(starts[1])
        assert log[-1] == "succeeded"
        assert final.finished_at is not None and final.progress == 100

        # One converted version, the job's result; the storage holds its file and the upload's, nothing else.
        [child] = ModelVersion.objects.filter(parent=version)
        assert child.recipe_key == "onnx:none" and child.number == 2
        assert final.result_version_id == child.pk and final.result["parity"]["passed"] is True
        assert ModelVersion.objects.filter(model=model).count() == 2
        stored = {str(p.relative_to(artifact_dir)) for p in stored_files(artifact_dir)}
        assert stored == {version.artifact_key, child.artifact_key}
        runs = {
            task: f"{float(seconds):.2f} s" for task, seconds in second.tasks(SUCCEEDED).items() if task in deliveries
        }
        print(
            f"\nworker kill: recovered {recovered_in:.1f} s after the kill (reaper called at once), "
            f"{time.monotonic() - started:.1f} s in all; the two deliveries ran {runs} (redelivered: {original_task})"
        )
    except BaseException:
        for worker in workers:
            print(worker.dump())
        raise
    finally:
        for worker in workers:
            worker.kill()
        broker.flushdb()
        broker.close()
